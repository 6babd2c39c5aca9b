/**
 * Air-gap rows (issue #12): regmirror preload, export and import beside skopeo doing the same jobs, on one machine.
 *
 *   preload  registry → local store    regmirror preload (into a data dir)      skopeo sync --src yaml --dest dir
 *   export   local store → archive     regmirror export --all (one OCI tar)     skopeo copy dir: → oci-archive: (one per image)
 *   import   archive → local store     regmirror import (the one tar)           skopeo copy oci-archive: → dir: (each image's)
 *
 * The upstream is a CNCF distribution without auth holding IMAGES images of random layers, pushed once. Each round
 * runs every job with fresh destinations, regmirror and skopeo alternating which goes first. Both are separate
 * processes, timed from start to exit, so start-up counts for both. MB/s is the images' bytes (manifests, configs,
 * layers) over the wall time.
 *
 *   npm run build && node --import tsx bench/airgap.ts [--rounds R] [--images N] [--mib M]
 */
import { rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { runProgram } from '../test/helpers/child-program.js'
import { startDistribution } from '../test/helpers/distribution.js'
import { buildOciLayout } from '../test/helpers/oci-image.js'
import { pushLayout, skopeoRun } from '../test/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/helpers/temp-dir.js'
import { CLI } from './servers.js'

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, images: { type: 'string', default: '4' }, mib: { type: 'string', default: '80' } },
})
const ROUNDS = Number(values.rounds)
const IMAGES = Number(values.images)
const MiB = 1024 * 1024

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

async function regmirror(args: string[]): Promise<void> {
  await runProgram(process.execPath, [CLI, ...args, '--progress', 'none', '--log-level', 'warn'], { timeoutMs: 600_000 })
}

async function main(): Promise<void> {
  const work = await makeTempDir('bench-airgap')
  try {
    const upstream = await startDistribution({ auth: 'none' })
    const repos: string[] = []
    let bytes = 0
    for (let i = 0; i < IMAGES; i++) {
      const layer = Math.floor((Number(values.mib) * MiB) / 2)
      const img = await buildOciLayout(join(work, `src-${i}`), { tag: 'v1', layerSizes: [layer, layer] })
      await pushLayout(img.layoutDir, 'v1', upstream.hostPort, `air/img${i}`)
      repos.push(`air/img${i}`)
      bytes += img.totalBytes
    }
    const refs = repos.map((r) => `bench/${r}:v1`)
    const up = ['--upstream', `bench=${upstream.directUrl}`, '--default-upstream', 'bench']
    const syncYaml = join(work, 'sync.yml')
    await writeFile(
      syncYaml,
      JSON.stringify({ [upstream.hostPort]: { 'tls-verify': false, images: Object.fromEntries(repos.map((r) => [r, ['v1']])) } }),
    )
    const rows: Record<string, { regmirror: number[]; skopeo: number[] }> = {}
    const add = (row: string, who: 'regmirror' | 'skopeo', ms: number) => (rows[row] ??= { regmirror: [], skopeo: [] })[who].push(ms)
    for (let round = 0; round < ROUNDS; round++) {
      const d = join(work, `round-${round}`)
      const data = join(d, 'data')
      const archive = join(d, 'all.tar')
      const closed = join(d, 'closed')
      const jobs = {
        regmirror: {
          preload: () => regmirror(['preload', '--data', data, ...up, ...refs]),
          export: () => regmirror(['export', '--data', data, ...up, '--all', '-o', archive]),
          import: () => regmirror(['import', '--data', closed, ...up, archive]),
        },
        skopeo: {
          preload: () => skopeoRun(['sync', '--src', 'yaml', '--dest', 'dir', syncYaml, join(d, 'sk-store')], 600_000),
          export: () =>
            Promise.all(
              repos.map((r, i) =>
                // skopeo sync names each image's directory by the last part of its repository.
                skopeoRun(
                  ['copy', `dir:${join(d, 'sk-store', `${r.split('/').pop()}:v1`)}`, `oci-archive:${join(d, `sk-${i}.tar`)}:v1`],
                  600_000,
                ),
              ),
            ),
          import: () =>
            Promise.all(
              repos.map((_, i) => skopeoRun(['copy', `oci-archive:${join(d, `sk-${i}.tar`)}:v1`, `dir:${join(d, `sk-in-${i}`)}`], 600_000)),
            ),
        },
      }
      const order: ('regmirror' | 'skopeo')[] = round % 2 === 0 ? ['regmirror', 'skopeo'] : ['skopeo', 'regmirror']
      for (const job of ['preload', 'export', 'import'] as const) {
        for (const who of order) {
          await runProgram('sync', [])
          add(job, who, await timed(jobs[who][job]))
        }
      }
      await stat(archive)
      await rm(d, { recursive: true, force: true })
      process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`)
    }
    const mb = bytes / 1e6
    console.log(`${IMAGES} images, ${(bytes / MiB).toFixed(0)} MiB in all; medians of ${ROUNDS} rounds\n`)
    console.log('| job | skopeo s | regmirror s | skopeo MB/s | regmirror MB/s | regmirror / skopeo (speed) |')
    console.log('|---|---|---|---|---|---|')
    for (const [job, r] of Object.entries(rows)) {
      const s = median(r.skopeo) / 1000
      const g = median(r.regmirror) / 1000
      console.log(
        `| ${job} | ${s.toFixed(2)} | ${g.toFixed(2)} | ${(mb / s).toFixed(0)} | ${(mb / g).toFixed(0)} | ${(s / g).toFixed(2)} |`,
      )
    }
    console.log(`\nper round (ms): ${JSON.stringify(rows)}`)
    await upstream.stop()
  } finally {
    await removeTempDir(work)
  }
}

await main()
