/**
 * regmirror vs CNCF distribution (proxy mode), side by side on one machine, same upstream, same workloads.
 * `npm run bench` (full) or `npm run bench -- --quick`. See bench/README.md.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { cpus, loadavg, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startDistribution, type Distribution } from '../test/helpers/distribution.js'
import { buildOciLayout, type OciLayout } from '../test/helpers/oci-image.js'
import { findProgram } from '../test/helpers/programs.js'
import { pushLayout } from '../test/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/helpers/temp-dir.js'
import type * as client from './client.js'
import { inWorker } from './in-worker.js'
import { pidOfDistribution, peakRss, REPO_ROOT, resetPeakRss, startRegmirror, type Regmirror } from './servers.js'
import { measureStartup, writeBlobs, type StartupResult } from './startup.js'

const MiB = 1024 * 1024

// ---------------------------------------------------------------------------------------------------------------
// options

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'skip-startup': { type: 'boolean', default: false },
    'startup-blobs': { type: 'string' },
    'load-seconds': { type: 'string' },
    out: { type: 'string' },
    // Emulates the mirror's real situation, a limited link to the upstream registry; unset = loopback speed.
    'upstream-mbps': { type: 'string' },
    // Comma-separated N for the concurrent cold pulls (default 8,32).
    concurrency: { type: 'string' },
  },
})
const quick = flags.quick || process.env.BENCH_QUICK === '1'
const SIZES = quick
  ? {
      cold: [10, 10, 10],
      ttfb: 20,
      conc: [5, 5, 5],
      loadSeconds: 3,
      loadConnections: 16,
      hitClients: 2,
      hitRounds: 2,
      startupBlobs: 10_000,
    }
  : {
      cold: [100, 100, 100],
      ttfb: 150,
      conc: [50, 50, 50],
      loadSeconds: 10,
      loadConnections: 16,
      hitClients: 4,
      hitRounds: 3,
      startupBlobs: 100_000,
    }
if (flags['startup-blobs'] !== undefined) SIZES.startupBlobs = Number(flags['startup-blobs'])
if (flags['load-seconds'] !== undefined) SIZES.loadSeconds = Number(flags['load-seconds'])
const RESULTS = resolve(REPO_ROOT, flags.out ?? (quick ? 'bench/RESULTS.quick.md' : 'bench/RESULTS.md'))
const CONCURRENCY = flags.concurrency === undefined ? [8, 32] : flags.concurrency.split(',').map(Number)
const LINK_BYTES_PER_SECOND = flags['upstream-mbps'] === undefined ? undefined : Number(flags['upstream-mbps']) * 1e6

// ---------------------------------------------------------------------------------------------------------------
// measuring

interface Mirror {
  name: 'distribution' | 'regmirror'
  /** Base URL clients use (no counting proxy in between). */
  url: string
  pid: number
}

interface Measured<T> {
  value: T
  /** Body bytes the upstream sent during the workload (counting proxy). */
  upstreamBytes: number
  upstreamBlobGets: number
  upstreamManifestRequests: number
  upstreamRequests: number
  /** VmHWM of the mirror during the workload (reset before it). */
  peakRss: number
}

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/** Waits until the upstream's counting proxy saw no new request for `quietMs` and every record is complete. */
async function settle(upstream: Distribution, quietMs = 500, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = -1
  let since = Date.now()
  for (;;) {
    const reqs = upstream.requests()
    const busy = reqs.some((r) => !r.done)
    if (reqs.length !== last || busy) {
      last = reqs.length
      since = Date.now()
    } else if (Date.now() - since >= quietMs) return
    if (Date.now() > deadline) return
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function measure<T>(upstream: Distribution, mirror: Mirror, what: string, work: () => Promise<T>): Promise<Measured<T>> {
  log(`${mirror.name}: ${what}`)
  await settle(upstream, 200)
  const before = upstream.requests().length
  await resetPeakRss(mirror.pid)
  const value = await work()
  // distribution keeps copying into its storage after a client went away; count that too.
  await settle(upstream)
  const rss = await peakRss(mirror.pid)
  const recs = upstream.requests().slice(before)
  return {
    value,
    upstreamBytes: recs.reduce((n, r) => n + r.bytes, 0),
    upstreamBlobGets: recs.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length,
    upstreamManifestRequests: recs.filter((r) => r.path.includes('/manifests/')).length,
    upstreamRequests: recs.length,
    peakRss: rss,
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the table

interface Row {
  name: string
  unit: string
  better: 'lower' | 'higher' | 'info'
  distribution: number | undefined
  regmirror: number | undefined
  digits?: number
  note?: string
}

function fmt(v: number | undefined, digits = 2): string {
  if (v === undefined || Number.isNaN(v)) return '–'
  return v.toFixed(digits)
}

function ratio(r: Row): string {
  if (r.distribution === undefined || r.regmirror === undefined || r.distribution === 0) return '–'
  return `${(r.regmirror / r.distribution).toFixed(r.regmirror / r.distribution < 0.1 ? 3 : 2)}×`
}

function markdownTable(rows: Row[]): string {
  const lines = [
    '| workload | unit | distribution | regmirror | regmirror / distribution | better |',
    '|---|---|---:|---:|---:|---|',
    ...rows.map(
      (r) => `| ${r.name} | ${r.unit} | ${fmt(r.distribution, r.digits)} | ${fmt(r.regmirror, r.digits)} | ${ratio(r)} | ${r.better} |`,
    ),
  ]
  return lines.join('\n')
}

function plainTable(rows: Row[]): string {
  const cells = [
    ['workload', 'unit', 'distribution', 'regmirror', 'ratio', 'better'],
    ...rows.map((r) => [r.name, r.unit, fmt(r.distribution, r.digits), fmt(r.regmirror, r.digits), ratio(r), r.better]),
  ]
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)))
  return cells.map((c) => c.map((x, i) => (i >= 2 && i <= 4 ? x.padStart(widths[i]!) : x.padEnd(widths[i]!))).join('  ')).join('\n')
}

// ---------------------------------------------------------------------------------------------------------------
// main

function machine(): Record<string, string> {
  const run = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim()
    } catch {
      return 'unknown'
    }
  }
  return {
    date: new Date().toISOString(),
    cpu: `${cpus()[0]?.model ?? 'unknown'} (nproc ${run('nproc', [])})`,
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    kernel: run('uname', ['-r']),
    node: process.version,
    distribution: run('docker-registry', ['--version']),
    regmirror: `${run('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])} (${run('git', ['-C', REPO_ROOT, 'rev-parse', '--abbrev-ref', 'HEAD'])})`,
    mode: quick ? 'quick (--quick: small sizes)' : 'full',
    'upstream link':
      LINK_BYTES_PER_SECOND === undefined
        ? 'loopback, unpaced'
        : `paced to ${LINK_BYTES_PER_SECOND / 1e6} MB/s for all upstream traffic together (--upstream-mbps)`,
  }
}

async function main(): Promise<void> {
  for (const p of ['docker-registry', 'skopeo']) {
    if (findProgram(p) === undefined)
      throw new Error(`bench: ${p} is not installed (apt-get install -y ${p === 'skopeo' ? 'skopeo' : 'docker-registry'})`)
  }
  const info = machine()
  const started = Date.now()
  const run = randomBytes(4).toString('hex')
  const cleanups: (() => Promise<void>)[] = []
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => {})
  }
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)))

  try {
    // --- servers -------------------------------------------------------------------------------------------
    log('starting the upstream distribution, distribution in proxy mode and regmirror')
    const upstream = await startDistribution({ auth: 'none', linkBytesPerSecond: LINK_BYTES_PER_SECOND })
    cleanups.push(upstream.stop)
    const distProxy = await startDistribution({ proxy: { remoteurl: upstream.url } })
    cleanups.push(distProxy.stop)
    const dataDir = await makeTempDir('bench-regmirror')
    cleanups.push(() => removeTempDir(dataDir))
    const rm: Regmirror = await startRegmirror({ dataDir, upstreamUrl: upstream.url })
    cleanups.push(rm.stop)
    const mirrors: Mirror[] = [
      { name: 'distribution', url: distProxy.directUrl, pid: await pidOfDistribution(distProxy.configPath) },
      { name: 'regmirror', url: rm.url, pid: rm.pid },
    ]

    // --- images --------------------------------------------------------------------------------------------
    const layoutsDir = await makeTempDir('bench-layouts')
    cleanups.push(() => removeTempDir(layoutsDir))
    const upstreamDirect = upstream.directUrl.replace(/^http:\/\//, '')
    const image = async (name: string, layersMiB: number[]): Promise<{ repo: string; tag: string; layout: OciLayout }> => {
      const repo = `bench-${run}/${name}`
      const layout = await buildOciLayout(join(layoutsDir, name), { tag: 'v1', layerSizes: layersMiB.map((m) => m * MiB) })
      await pushLayout(layout.layoutDir, 'v1', upstreamDirect, repo, { timeoutMs: 600_000 })
      await removeTempDir(layout.layoutDir)
      return { repo, tag: 'v1', layout }
    }
    log('building and pushing the images to the upstream')
    const cold = await image('cold', SIZES.cold)
    const big = await image('ttfb', [SIZES.ttfb])
    const conc = new Map<number, Awaited<ReturnType<typeof image>>>()
    for (const n of CONCURRENCY) conc.set(n, await image(`conc${n}`, SIZES.conc))
    const bigLayer = big.layout.layerDigests[0]!

    // --- workloads -----------------------------------------------------------------------------------------
    const res: Record<string, Partial<Record<Mirror['name'], Measured<unknown>>>> = {}
    const put = (key: string, m: Mirror, v: Measured<unknown>): void => {
      ;(res[key] ??= {})[m.name] = v
    }
    const get = <T>(key: string, m: Mirror['name']): Measured<T> | undefined => res[key]?.[m] as Measured<T> | undefined

    // the upstream's own first byte for the big layer, as the reference for streaming
    const upstreamTtfb = await inWorker('firstByte', upstream.directUrl, big.repo, bigLayer)

    // Workload by workload, distribution then regmirror back to back, so a change in the machine's load over the run
    // hits both columns alike.
    const workloads: { key: string; what: string; run: (m: Mirror) => Promise<unknown> }[] = [
      { key: 'cold', what: `cold pull ${cold.repo}`, run: (m) => inWorker('pull', m.url, cold.repo, cold.tag, 3) },
      { key: 'warm', what: `warm pull ${cold.repo}`, run: (m) => inWorker('pull', m.url, cold.repo, cold.tag, 3) },
      { key: 'ttfb', what: `first byte of a cold ${SIZES.ttfb} MiB layer`, run: (m) => inWorker('firstByte', m.url, big.repo, bigLayer) },
      ...CONCURRENCY.map((n) => ({
        key: `conc${n}`,
        what: `${n} concurrent cold pulls`,
        run: (m: Mirror) => inWorker('concurrentPulls', m.url, conc.get(n)!.repo, conc.get(n)!.tag, n),
      })),
      {
        key: 'tag',
        what: `tag GET load, ${SIZES.loadConnections} connections, ${SIZES.loadSeconds}s`,
        run: (m) => inWorker('load', m.url, `/v2/${cold.repo}/manifests/${cold.tag}`, SIZES.loadConnections, SIZES.loadSeconds, 1),
      },
      {
        key: 'hit',
        what: `cache-hit blob reads, ${SIZES.hitClients} clients × ${SIZES.hitRounds}`,
        run: (m) => inWorker('blobThroughput', m.url, big.repo, bigLayer, SIZES.hitClients, SIZES.hitRounds),
      },
    ]
    const loadAvg: Record<string, string> = {}
    for (const w of workloads) {
      const before = loadavg()[0]!
      for (const m of mirrors) put(w.key, m, await measure(upstream, m, w.what, () => w.run(m)))
      loadAvg[w.key] = `${before.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}`
    }
    const lifetimePeak: Record<string, number> = {}
    for (const m of mirrors) {
      // VmHWM was reset per workload; the max over workloads is the run's peak (start-up happens before any reset).
      lifetimePeak[m.name] = Math.max(...Object.values(res).map((r) => r[m.name]?.peakRss ?? 0))
    }

    // --- start-up with many blobs (regmirror only) ---------------------------------------------------------
    let startup: { empty: StartupResult[]; full: StartupResult[] } | undefined
    if (!flags['skip-startup']) {
      const empty = await makeTempDir('bench-startup-empty')
      const many = await makeTempDir('bench-startup')
      cleanups.push(
        () => removeTempDir(empty),
        () => removeTempDir(many),
      )
      log(`start-up: writing ${SIZES.startupBlobs} blobs of 1 KiB`)
      await writeBlobs(many, SIZES.startupBlobs, 1024)
      log('start-up: measuring (3 runs each, empty and full)')
      startup = { empty: await measureStartup(empty, 0, 3), full: await measureStartup(many, SIZES.startupBlobs, 3) }
    }

    // --- report --------------------------------------------------------------------------------------------
    const v = <T>(key: string, m: Mirror['name']): T | undefined => get<T>(key, m)?.value
    const both = (f: (m: Mirror['name']) => number | undefined): Pick<Row, 'distribution' | 'regmirror'> => ({
      distribution: f('distribution'),
      regmirror: f('regmirror'),
    })
    const coldSize = cold.layout.totalBytes
    const concSize = conc.get(8)!.layout.totalBytes
    const rows: Row[] = [
      {
        name: `cold pull, ${(coldSize / MiB).toFixed(0)} MiB 3 layers: wall`,
        unit: 's',
        better: 'lower',
        ...both((m) => (v<client.PullResult>('cold', m)?.ms ?? NaN) / 1000),
      },
      {
        name: 'cold pull: upstream bytes',
        unit: '× image',
        better: 'lower',
        digits: 3,
        ...both((m) => (get('cold', m)?.upstreamBytes ?? NaN) / coldSize),
      },
      {
        name: 'cold pull: upstream blob GETs (image has 4 blobs)',
        unit: 'count',
        better: 'lower',
        digits: 0,
        ...both((m) => get('cold', m)?.upstreamBlobGets),
      },
      {
        name: `first byte, cold ${SIZES.ttfb} MiB layer (upstream's own: ${upstreamTtfb.firstByteMs.toFixed(1)} ms)`,
        unit: 'ms',
        better: 'lower',
        digits: 1,
        ...both((m) => v<Awaited<ReturnType<typeof client.firstByte>>>('ttfb', m)?.firstByteMs),
      },
      {
        name: `cold ${SIZES.ttfb} MiB layer: whole body (upstream's own: ${(upstreamTtfb.totalMs / 1000).toFixed(2)} s)`,
        unit: 's',
        better: 'lower',
        ...both((m) => (v<Awaited<ReturnType<typeof client.firstByte>>>('ttfb', m)?.totalMs ?? NaN) / 1000),
      },
      { name: 'warm pull: wall', unit: 's', better: 'lower', ...both((m) => (v<client.PullResult>('warm', m)?.ms ?? NaN) / 1000) },
      { name: 'warm pull: upstream bytes', unit: 'bytes', better: 'lower', digits: 0, ...both((m) => get('warm', m)?.upstreamBytes) },
      ...CONCURRENCY.flatMap((n): Row[] => [
        {
          name: `${n} concurrent cold pulls, ${(concSize / MiB).toFixed(0)} MiB 3 layers: wall`,
          unit: 's',
          better: 'lower',
          ...both((m) => (v<{ ms: number }>(`conc${n}`, m)?.ms ?? NaN) / 1000),
        },
        {
          name: `${n} concurrent cold pulls: upstream bytes`,
          unit: '× image',
          better: 'lower',
          digits: 3,
          ...both((m) => (get(`conc${n}`, m)?.upstreamBytes ?? NaN) / concSize),
        },
      ]),
      {
        name: `tag manifest GET, cached tag (${SIZES.loadConnections} conns)`,
        unit: 'req/s',
        better: 'higher',
        digits: 0,
        ...both((m) => v<client.LoadResult>('tag', m)?.reqPerS),
      },
      { name: 'tag manifest GET: p99 latency', unit: 'ms', better: 'lower', ...both((m) => v<client.LoadResult>('tag', m)?.p99Ms) },
      {
        name: 'tag manifest GET: upstream requests during the run',
        unit: 'count',
        better: 'lower',
        digits: 0,
        ...both((m) => get('tag', m)?.upstreamRequests),
      },
      {
        name: `cache-hit throughput, ${SIZES.ttfb} MiB blob, ${SIZES.hitClients} clients × ${SIZES.hitRounds}`,
        unit: 'MB/s',
        better: 'higher',
        digits: 0,
        ...both((m) => v<{ mbPerS: number }>('hit', m)?.mbPerS),
      },
      { name: 'peak RSS over all workloads', unit: 'MiB', better: 'lower', digits: 1, ...both((m) => (lifetimePeak[m] ?? NaN) / MiB) },
    ]
    const rssRows: Row[] = Object.keys(res).map((key) => ({
      name: `peak RSS during ${key}`,
      unit: 'MiB',
      better: 'lower' as const,
      digits: 1,
      ...both((m) => (get(key, m)?.peakRss ?? NaN) / MiB),
    }))

    const r = (key: string, m: Mirror['name']): number => rows.find((x) => x.name.startsWith(key))?.[m] ?? NaN
    const goals: { goal: string; value: string; met: boolean }[] = []
    const g = (goal: string, actual: number, target: number, higherBetter: boolean, unit: string): void => {
      goals.push({
        goal,
        value: `${actual.toFixed(3)}${unit} (target ${higherBetter ? '≥' : '≤'} ${target}${unit})`,
        met: higherBetter ? actual >= target : actual <= target,
      })
    }
    g('upstream bytes, single cold pull', r('cold pull: upstream bytes', 'regmirror'), 1.01, false, '×')
    for (const n of CONCURRENCY)
      g(`upstream bytes, ${n} concurrent cold pulls`, r(`${n} concurrent cold pulls: upstream bytes`, 'regmirror'), 1.01, false, '×')
    for (const n of CONCURRENCY) {
      const row = rows.find((x) => x.name.startsWith(`${n} concurrent cold pulls,`))!
      g(`wall time, ${n} concurrent cold pulls, vs distribution`, row.regmirror! / row.distribution!, 0.4, false, '×')
    }
    const tag = rows.find((x) => x.name.startsWith('tag manifest GET, cached'))!
    g('tag-manifest req/s vs distribution', tag.regmirror! / tag.distribution!, 50, true, '×')
    const hit = rows.find((x) => x.name.startsWith('cache-hit throughput'))!
    g('cache-hit throughput vs distribution', hit.regmirror! / hit.distribution!, 1.1, true, '×')
    g('regmirror peak RSS (all workloads)', lifetimePeak.regmirror! / MiB, 120, false, ' MiB')
    if (startup)
      g(
        `regmirror peak RSS right after start-up with ${SIZES.startupBlobs} blobs`,
        median(startup.full.map((s) => s.peakRssBytes)) / MiB,
        120,
        false,
        ' MiB',
      )

    const startupText = startup
      ? [
          `| data dir | spawn → 'regmirror listening' (ms) | spawn → GET /v2/ 200 (ms) | index rebuild alone (ms, from its log) | peak RSS after start (MiB) |`,
          '|---|---:|---:|---:|---:|',
          ...(['empty', 'full'] as const).map((k) => {
            const s = startup![k]
            return `| ${k === 'empty' ? 'empty' : `${SIZES.startupBlobs} blobs × 1 KiB`} | ${fmt(median(s.map((x) => x.listeningMs ?? NaN)), 0)} | ${fmt(median(s.map((x) => x.readyMs)), 0)} | ${fmt(median(s.map((x) => x.indexLoadMs ?? NaN)), 0)} | ${fmt(median(s.map((x) => x.peakRssBytes)) / MiB, 1)} |`
          }),
          '',
          `Median of 3 runs; every run: ${startup.full.map((x) => `${x.readyMs.toFixed(0)} ms / ${(x.peakRssBytes / MiB).toFixed(0)} MiB`).join(', ')} (full).`,
        ].join('\n')
      : '(skipped: --skip-startup)'

    const details = mirrors
      .map((m) =>
        Object.entries(res)
          .map(([key, x]) => {
            const d = x[m.name]!
            return `| ${m.name} | ${key} | ${d.upstreamRequests} | ${d.upstreamManifestRequests} | ${d.upstreamBlobGets} | ${(d.upstreamBytes / MiB).toFixed(1)} |`
          })
          .join('\n'),
      )
      .join('\n')

    const generated = [
      `# Benchmark results: regmirror vs CNCF distribution (proxy mode)`,
      '',
      `Generated by \`npm run bench${quick ? ' -- --quick' : ''}\` (bench/run.ts); total run time ${((Date.now() - started) / 1000).toFixed(0)} s.`,
      '',
      '## Machine',
      '',
      ...Object.entries(info).map(([k, x]) => `- ${k}: ${x}`),
      '',
      '## Results',
      '',
      'Ratio = regmirror / distribution; "better" says which direction wins for that row.',
      '',
      markdownTable(rows),
      '',
      '### Peak RSS per workload (VmHWM, reset before each workload)',
      '',
      markdownTable(rssRows),
      '',
      '### Upstream traffic per workload (counting proxy in front of the upstream)',
      '',
      `1-minute load average of the machine around each workload (before → after; ${cpus().length} CPUs): ${Object.entries(loadAvg)
        .map(([k, x]) => `${k} ${x}`)
        .join(', ')}.`,
      '',
      '| mirror | workload | requests | manifest requests | blob GETs | body MiB |',
      '|---|---|---:|---:|---:|---:|',
      details,
      '',
      `### regmirror start-up with ${SIZES.startupBlobs} blobs on disk (issue #3)`,
      '',
      startupText,
      '',
      '## Goals (issue #5 / #3; targets, not assertions)',
      '',
      '| goal | regmirror | met |',
      '|---|---|---|',
      ...goals.map((x) => `| ${x.goal} | ${x.value} | ${x.met ? 'yes' : '**no**'} |`),
      '',
    ].join('\n')

    // Hand-written analysis below the marker survives re-runs.
    const MARK = '<!-- analysis: hand-written, kept across runs -->'
    const previous = await readFile(RESULTS, 'utf8').catch(() => '')
    const analysis = previous.includes(MARK) ? previous.slice(previous.indexOf(MARK)) : `${MARK}\n\n## Analysis\n\n(to be written)\n`
    await writeFile(RESULTS, `${generated}\n${analysis}`)

    process.stdout.write(`\n${plainTable(rows)}\n\n${plainTable(rssRows)}\n\n${startupText}\n\n`)
    for (const x of goals) process.stdout.write(`${x.met ? 'MET   ' : 'MISSED'} ${x.goal}: ${x.value}\n`)
    process.stdout.write(`\nwritten to ${RESULTS}\n`)
  } finally {
    await cleanup()
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
