/**
 * Build against build: N concurrent clients GET the same cold blobs through two (or more) regmirror builds in turn,
 * from one fake upstream (test/helpers/fake-registry/, in memory, no auth), a fresh data dir and fresh blobs per
 * run, builds alternating round by round so a change in the machine's load hits each alike. Prints wall times and
 * VmHWM per build. For telling a change from noise, which one full `npm run bench` cannot.
 *
 *   node --import tsx bench/ab.ts [--clients N] [--layers L] [--mib M] [--rounds R] [--hits H] CLI_A CLI_B ...
 *   node --import tsx bench/ab.ts --workers 1,2 [--seconds S] ... CLI      (issue #16: 1 worker against N)
 *
 * With --hits H, the same N clients then GET the now cached blobs H times over, timed apart: the cache-hit path.
 * With --workers LIST, each build runs once per worker count (`serve --workers W`), and each run also measures,
 * with wrk, cache-hit throughput (4 and 16 connections on the first cached blob) and tag GET req/s (16
 * connections, a cached tag), S seconds each; then prints how each row scales from the first count to the others.
 *
 * Each CLI is a built `dist/cli.js` (e.g. from `git worktree add /tmp/old <commit>` + `npm run build` there).
 * AB_NODE_ARGS is passed to each regmirror's node, e.g. `AB_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"`.
 * VmHWM is summed over the serve process and its children (the workers), with the largest single process beside it.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startFakeRegistry } from '../test/helpers/fake-registry/index.js'
import { MANIFEST_ACCEPT, wrk } from './load-tools.js'
import { cliHasWorkers, peakRssOfTree, startRegmirror } from './servers.js'

const { values, positionals: builds } = parseArgs({
  allowPositionals: true,
  options: {
    clients: { type: 'string', default: '8' },
    layers: { type: 'string', default: '1' },
    mib: { type: 'string', default: '150' },
    rounds: { type: 'string', default: '3' },
    hits: { type: 'string', default: '0' },
    workers: { type: 'string' },
    seconds: { type: 'string', default: '5' },
  },
})
const clients = Number(values.clients)
const layers = Number(values.layers)
const size = Number(values.mib) * 1024 * 1024
const rounds = Number(values.rounds)
const hits = Number(values.hits)
const seconds = Number(values.seconds)
const workerCounts = values.workers?.split(',') ?? []
if (builds.length === 0) {
  console.error('usage: node --import tsx bench/ab.ts [--clients N] [--layers L] [--mib M] [--rounds R] [--workers 1,N] CLI...')
  process.exit(2)
}
for (const cli of workerCounts.length > 0 ? builds : []) {
  if (!cliHasWorkers(cli)) {
    console.error(`${cli}: this build has no \`serve --workers\``)
    process.exit(2)
  }
}
const variants = builds.flatMap((cli) =>
  workerCounts.length === 0
    ? [{ cli, label: cli, args: [] }]
    : workerCounts.map((w) => ({ cli, label: `${cli} --workers ${w}`, args: ['--workers', w] })),
)

const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
fake.addImage('ab/tagged', 'v1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })

function pull(url: string, headers: http.OutgoingHttpHeaders = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent, headers }, (res) => {
        let n = 0
        res.on('data', (c: Buffer) => (n += c.length))
        res.on('end', () => resolve(n))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

type Series = Record<string, number[]>
const rows: Record<string, Series> = {}
const add = (row: string, label: string, x: number): void => void ((rows[row] ??= {})[label] ??= []).push(x)
const nodeArgs = process.env.AB_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? []

async function wrkRows(url: string, digest: string, label: string): Promise<void> {
  for (const c of [4, 16])
    add(`hit MB/s, wrk ${c} conns`, label, (await wrk(`${url}/v2/ab/blobs/${digest}`, { connections: c, seconds })).mbPerS)
  const tag = `${url}/v2/ab/tagged/manifests/v1`
  await pull(tag, { accept: MANIFEST_ACCEPT })
  add('tag req/s, wrk 16 conns', label, (await wrk(tag, { connections: 16, seconds, headers: [`Accept: ${MANIFEST_ACCEPT}`] })).reqPerS)
}

for (let round = 0; round < rounds; round++) {
  for (const v of variants) {
    const digests = Array.from({ length: layers }, () => fake.addBlob(randomBytes(size)))
    const dataDir = await mkdtemp(join(tmpdir(), 'regmirror-ab-'))
    const r = await startRegmirror({ cli: v.cli, nodeArgs, dataDir, upstreamUrl: fake.url, extraArgs: v.args })
    try {
      const all = (): Promise<number[]> =>
        Promise.all(Array.from({ length: clients }, () => digests.map((d) => pull(`${r.url}/v2/ab/blobs/${d}`))).flat())
      const started = performance.now()
      const got = await all()
      add('cold wall ms', v.label, performance.now() - started)
      const short = got.filter((n) => n !== size)
      if (short.length > 0) throw new Error(`${v.label}: ${short.length} responses short: ${short.join(', ')} of ${size} bytes`)
      if (hits > 0) {
        const hitStart = performance.now()
        for (let h = 0; h < hits; h++) if ((await all()).some((n) => n !== size)) throw new Error(`${v.label}: a hit was short`)
        add(
          `hits (${hits} × ${clients * layers} GETs) MB/s`,
          v.label,
          (clients * layers * size * hits) / 1e6 / ((performance.now() - hitStart) / 1000),
        )
      }
      if (workerCounts.length > 0) await wrkRows(r.url, digests[0]!, v.label)
      const rss = [...(await peakRssOfTree(r.pid)).values()]
      add('VmHWM MiB, all processes', v.label, rss.reduce((a, b) => a + b, 0) / 2 ** 20)
      add('VmHWM MiB, largest process', v.label, Math.max(...rss) / 2 ** 20)
    } catch (err) {
      // regmirror's own warnings and errors say why (the last few).
      const lines = r.program
        .output()
        .split('\n')
        .filter((l) => /"level":(4|5|6)\d/.test(l))
      console.error(lines.slice(-10).join('\n'))
      throw err
    } finally {
      await r.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(`${clients} clients × ${layers} cold blob(s) of ${values.mib} MiB, ${rounds} rounds`)
for (const v of variants) {
  console.log(v.label)
  for (const [row, s] of Object.entries(rows)) console.log(`  ${row}: ${s[v.label]!.map((x) => x.toFixed(0)).join(' ')}`)
}
if (workerCounts.length > 1) {
  console.log(`\nscaling, medians, --workers ${workerCounts[0]} → others (× the first; > 1 is better except for ms and MiB)`)
  for (const cli of builds) {
    for (const [row, s] of Object.entries(rows)) {
      const base = median(s[`${cli} --workers ${workerCounts[0]}`]!)
      const others = workerCounts.slice(1).map((w) => `${w}: ${(median(s[`${cli} --workers ${w}`]!) / base).toFixed(2)}×`)
      console.log(`  ${cli} ${row}: ${workerCounts[0]}: ${base.toFixed(0)}; ${others.join(', ')}`)
    }
  }
}
agent.destroy()
await fake.close()
