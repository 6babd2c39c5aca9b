/**
 * Issue #16's rows: regmirror vs CNCF distribution (proxy mode), side by side in one run, both on every core,
 * pulls timed with real clients (skopeo, wrk, curl) as well as bench/client.ts, the mirrors reaching the upstream
 * directly (no counting proxy in the timed path), upstream bytes counted from the upstream's own access log, peak
 * RSS of every process of regmirror's tree. See bench/README.md.
 *
 *   npm run build && node --import tsx bench/workers.ts [--quick] [--workers N] [--out FILE]
 */
import { randomBytes } from 'node:crypto'
import { stat } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startDistribution, type Distribution } from '../test/helpers/distribution.js'
import { buildOciLayout, type OciLayout } from '../test/helpers/oci-image.js'
import { findProgram } from '../test/helpers/programs.js'
import { pushLayout } from '../test/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/helpers/temp-dir.js'
import { AccessLog, traffic, type Traffic } from './access-log.js'
import { inWorker } from './in-worker.js'
import { curlBlob, MANIFEST_ACCEPT, skopeoPulls, wrk } from './load-tools.js'
import { cliHasWorkers, peakRssOfTree, REPO_ROOT, resetPeakRssOfTree, startRegmirror } from './servers.js'
import { report, type Measured, type MirrorName } from './workers-report.js'

const MiB = 1024 * 1024
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    // Passed to `serve --workers N`; unset, the build's default (today's main has no such flag: one process).
    workers: { type: 'string' },
    concurrency: { type: 'string' },
    seconds: { type: 'string' },
  },
})
const quick = flags.quick || process.env.BENCH_QUICK === '1'
const SIZES = quick
  ? { cold: [10, 10, 10], blob: 20, conc: [5, 5, 5], seconds: 3 }
  : { cold: [100, 100, 100], blob: 150, conc: [50, 50, 50], seconds: 10 }
if (flags.seconds !== undefined) SIZES.seconds = Number(flags.seconds)
const CONCURRENCY = flags.concurrency === undefined ? [8, 32] : flags.concurrency.split(',').map(Number)
const OUT = resolve(REPO_ROOT, flags.out ?? (quick ? 'bench/RESULTS-workers.quick.md' : 'bench/RESULTS-workers.md'))

const log = (msg: string): void => void process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)

interface Mirror {
  name: MirrorName
  url: string
  hostPort: string
  pid: number
}
interface Image {
  repo: string
  tag: string
  layout: OciLayout
  /** Bytes of the first layer (the blob of the curl and wrk rows). */
  layerBytes: number
}

async function main(): Promise<void> {
  for (const p of ['docker-registry', 'skopeo', 'wrk', 'curl'])
    if (findProgram(p) === undefined) throw new Error(`bench: ${p} is not installed (apt-get install -y ${p})`)
  const workersArgs = flags.workers === undefined ? [] : ['--workers', flags.workers]
  const hasWorkers = cliHasWorkers()
  if (workersArgs.length > 0 && !hasWorkers) throw new Error('bench: --workers given but this build has no `serve --workers`')
  const started = Date.now()
  const run = randomBytes(4).toString('hex')
  const cleanups: (() => Promise<void>)[] = []
  process.once('SIGINT', () => void Promise.allSettled(cleanups.reverse().map((c) => c())).finally(() => process.exit(130)))
  try {
    log('starting the upstream distribution, distribution in proxy mode and regmirror')
    let upstreamPid = 0
    const access = new AccessLog(() => upstreamPid)
    const upstream: Distribution = await startDistribution({ auth: 'none', onLine: access.onLine })
    upstreamPid = upstream.pid
    cleanups.push(upstream.stop)
    // Both mirrors reach the upstream directly: the counting proxy in front of it is not in any timed path.
    const distProxy = await startDistribution({ proxy: { remoteurl: upstream.directUrl } })
    cleanups.push(distProxy.stop)
    const dataDir = await makeTempDir('bench-workers-regmirror')
    cleanups.push(() => removeTempDir(dataDir))
    const rm = await startRegmirror({ dataDir, upstreamUrl: upstream.directUrl, extraArgs: workersArgs })
    cleanups.push(rm.stop)
    const mirrors: Mirror[] = [
      { name: 'distribution', url: distProxy.directUrl, hostPort: new URL(distProxy.directUrl).host, pid: distProxy.pid },
      { name: 'regmirror', url: rm.url, hostPort: new URL(rm.url).host, pid: rm.pid },
    ]

    const layoutsDir = await makeTempDir('bench-workers-layouts')
    cleanups.push(() => removeTempDir(layoutsDir))
    const image = async (name: string, layersMiB: number[]): Promise<Image> => {
      const repo = `bench-${run}/${name}`
      const layout = await buildOciLayout(join(layoutsDir, name), { tag: 'v1', layerSizes: layersMiB.map((m) => m * MiB) })
      await pushLayout(layout.layoutDir, 'v1', new URL(upstream.directUrl).host, repo, { timeoutMs: 600_000 })
      const layerBytes = (await stat(join(layout.layoutDir, 'blobs/sha256', layout.layerDigests[0]!.slice(7)))).size
      await removeTempDir(layout.layoutDir)
      return { repo, tag: 'v1', layout, layerBytes }
    }
    log('building and pushing the images to the upstream')
    // One image per cold workload and client kind: each is cold once for each mirror (their caches are apart).
    const images: Record<string, Image> = {
      'cold-skopeo': await image('cold-skopeo', SIZES.cold),
      'cold-client': await image('cold-client', SIZES.cold),
      blob: await image('blob', [SIZES.blob]),
    }
    for (const n of CONCURRENCY) {
      images[`conc${n}-skopeo`] = await image(`conc${n}-skopeo`, SIZES.conc)
      images[`conc${n}-client`] = await image(`conc${n}-client`, SIZES.conc)
    }
    const blob = images.blob!
    const blobDigest = blob.layout.layerDigests[0]!
    const blobPath = `/v2/${blob.repo}/blobs/${blobDigest}`
    const blobSize = blob.layerBytes
    const upstreamCurl = await curlBlob(`${upstream.directUrl}${blobPath}`, blobSize)
    await access.settle()

    const tagImage = images['cold-client']!
    const workloads: { key: string; what: string; run: (m: Mirror) => Promise<unknown> }[] = [
      { key: 'cold-skopeo', what: 'cold pull, skopeo', run: (m) => skopeoPulls(m.hostPort, images['cold-skopeo']!.repo, 'v1', 1) },
      { key: 'cold-client', what: 'cold pull, client.ts', run: (m) => inWorker('pull', m.url, tagImage.repo, 'v1', 3) },
      { key: 'blob-curl', what: `cold ${SIZES.blob} MiB blob, curl`, run: (m) => curlBlob(`${m.url}${blobPath}`, blobSize) },
      ...CONCURRENCY.flatMap((n) => [
        {
          key: `conc${n}-skopeo`,
          what: `${n} concurrent cold pulls, skopeo`,
          run: (m: Mirror) => skopeoPulls(m.hostPort, images[`conc${n}-skopeo`]!.repo, 'v1', n),
        },
        {
          key: `conc${n}-client`,
          what: `${n} concurrent cold pulls, client.ts`,
          run: (m: Mirror) => inWorker('concurrentPulls', m.url, images[`conc${n}-client`]!.repo, 'v1', n),
        },
      ]),
      {
        key: 'tag',
        what: `tag GET, wrk 16 connections, ${SIZES.seconds} s`,
        run: (m) =>
          wrk(`${m.url}/v2/${tagImage.repo}/manifests/v1`, {
            connections: 16,
            seconds: SIZES.seconds,
            headers: [`Accept: ${MANIFEST_ACCEPT}`],
          }),
      },
      ...[4, 16].map((c) => ({
        key: `hit${c}`,
        what: `cache hits, wrk ${c} connections, ${SIZES.seconds} s`,
        run: (m: Mirror) => wrk(`${m.url}${blobPath}`, { connections: c, seconds: SIZES.seconds }),
      })),
    ]

    const res: Record<string, Partial<Record<MirrorName, Measured>>> = {}
    for (const w of workloads) {
      // distribution then regmirror back to back, so the machine's load moves hit both columns alike.
      for (const m of mirrors) {
        log(`${m.name}: ${w.what}`)
        await access.settle(200)
        const before = access.records.length
        await resetPeakRssOfTree(m.pid)
        const load = loadavg()[0]!
        const value = await w.run(m)
        const errors = (value as { errors?: string[] }).errors ?? []
        if (errors.length > 0) log(`${m.name}: ${errors.length} pulls failed and were run again; the first: ${errors[0]}`)
        await access.settle()
        const up: Traffic = traffic(access.records.slice(before))
        ;(res[w.key] ??= {})[m.name] = { value, upstream: up, peakRss: await peakRssOfTree(m.pid), load }
      }
    }
    const sizes: Record<string, number> = Object.fromEntries(Object.entries(images).map(([k, i]) => [k, i.layout.totalBytes]))
    // The curl row fetches the one layer, not the image.
    sizes['blob-curl'] = blobSize
    await report({
      out: OUT,
      quick,
      started,
      res,
      sizes,
      concurrency: CONCURRENCY,
      blobMiB: SIZES.blob,
      seconds: SIZES.seconds,
      upstreamCurl,
      mainPid: rm.pid,
      workers: hasWorkers ? `serve --workers ${flags.workers ?? '(build default)'}` : 'build has no --workers (one process)',
    })
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {})
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
