/**
 * regmirror side by side with CNCF distribution in proxy mode: same machine, same upstream (a third
 * distribution behind a counting proxy, so upstream bytes are measured for both), same client, same
 * workloads. Prints a table of both columns with ratios and writes bench/RESULTS.md.
 *
 *   npm run bench            full sizes (~700 MB of images; several minutes)
 *   npm run bench -- --quick small sizes, for trying the harness
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { Pool, request } from 'undici'
import { startDistribution, type Distribution } from '../test/e2e/helpers/distribution.js'
import { freePort } from '../test/e2e/helpers/free-port.js'
import { buildOciLayout } from '../test/e2e/helpers/oci-image.js'
import { pushLayout } from '../test/e2e/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/e2e/helpers/temp-dir.js'

const quick = process.argv.includes('--quick')
const MB = 1024 * 1024
const SIZES = quick
  ? { cold: [8, 8, 8], ttfb: 16, concurrent: [4, 4, 4], hit: 16 }
  : { cold: [100, 100, 100], ttfb: 150, concurrent: [40, 40, 40], hit: 150 }
const TAG_SECONDS = quick ? 2 : 5
const HIT_CLIENTS = 4
const HIT_ROUNDS = quick ? 2 : 3

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ')

interface Mirror {
  name: string
  url: string
  pid: number
  stop(): Promise<void>
}

interface Image {
  repo: string
  bytes: number
  layers: string[]
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Peak resident memory of a process (VmHWM), MiB. */
async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /VmHWM:\s+(\d+) kB/.exec(status)
  return m ? Number(m[1]) / 1024 : NaN
}

async function readVerified(body: AsyncIterable<Buffer>, digest: string): Promise<number> {
  const h = createHash('sha256')
  let n = 0
  for await (const c of body) {
    h.update(c)
    n += c.length
  }
  const got = `sha256:${h.digest('hex')}`
  if (got !== digest) throw new Error(`digest mismatch: want ${digest}, got ${got}`)
  return n
}

async function getJson(url: string): Promise<{ body: Buffer; digest: string }> {
  const res = await request(url, { headers: { accept: ACCEPT } })
  const chunks: Buffer[] = []
  for await (const c of res.body) chunks.push(c as Buffer)
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 200)}`)
  return { body: Buffer.concat(chunks), digest: String(res.headers['docker-content-digest']) }
}

/**
 * What containerd does for one platform: tag → (index → linux/amd64 manifest) → config and layers,
 * three blobs at a time, every body verified against its digest.
 */
async function pull(base: string, repo: string, tag: string): Promise<number> {
  let m = await getJson(`${base}/v2/${repo}/manifests/${tag}`)
  let doc = JSON.parse(m.body.toString()) as { manifests?: { digest: string; platform?: { architecture?: string } }[]; config?: { digest: string }; layers?: { digest: string }[] }
  if (doc.manifests) {
    const pick = doc.manifests.find((e) => e.platform?.architecture === 'amd64') ?? doc.manifests[0]!
    m = await getJson(`${base}/v2/${repo}/manifests/${pick.digest}`)
    doc = JSON.parse(m.body.toString()) as typeof doc
  }
  const blobs = [doc.config!.digest, ...doc.layers!.map((l) => l.digest)]
  let bytes = 0
  let next = 0
  const worker = async () => {
    while (next < blobs.length) {
      const d = blobs[next++]!
      const res = await request(`${base}/v2/${repo}/blobs/${d}`, { maxRedirections: 0 } as never)
      if (res.statusCode !== 200) throw new Error(`blob ${d}: ${res.statusCode}`)
      bytes += await readVerified(res.body as AsyncIterable<Buffer>, d)
    }
  }
  await Promise.all([worker(), worker(), worker()])
  return bytes
}

async function startRegmirror(upstreamUrl: string, dataDir: string): Promise<Mirror> {
  const port = await freePort()
  const child: ChildProcess = spawn(
    process.execPath,
    ['dist/cli.js', 'serve', '--listen', `127.0.0.1:${port}`, '--data', dataDir, '--upstream', `docker.io=${upstreamUrl}`, '--log-level', 'warn', '--max-size', '20GiB'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`${url}/v2/`)
      if (r.status === 200) break
    } catch {
      // not up yet
    }
    await sleep(100)
  }
  return {
    name: 'regmirror',
    url,
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
    },
  }
}

async function pushImage(work: string, upstream: Distribution, repo: string, layerMiB: number[]): Promise<Image> {
  const layout = await buildOciLayout(join(work, repo.replace('/', '-')), { tag: 'v1', layerSizes: layerMiB.map((n) => n * MB) })
  const direct = new URL(upstream.directUrl).host
  await pushLayout(layout.layoutDir, 'v1', direct, repo, { timeoutMs: 600_000 })
  const bytes = layout.blobDigests.length ? layout.totalBytes : 0
  return { repo, bytes, layers: layout.layerDigests }
}

function upstreamBytes(upstream: Distribution, from: number): number {
  return upstream
    .requests()
    .slice(from)
    .reduce((n, r) => n + r.bytes, 0)
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now()
  const value = await fn()
  return { ms: performance.now() - t0, value }
}

async function ttfb(base: string, repo: string, digest: string): Promise<number> {
  const t0 = performance.now()
  const res = await request(`${base}/v2/${repo}/blobs/${digest}`)
  let first = 0
  const h = createHash('sha256')
  for await (const c of res.body) {
    if (first === 0) first = performance.now() - t0
    h.update(c as Buffer)
  }
  if (`sha256:${h.digest('hex')}` !== digest) throw new Error('ttfb blob mismatch')
  return first
}

/** Completed 200s per second on one URL, with `connections` keep-alive connections. */
async function requestsPerSecond(base: string, path: string, seconds: number, connections = 32): Promise<number> {
  const pool = new Pool(base, { connections, pipelining: 1 })
  let ok = 0
  let failed = 0
  const end = performance.now() + seconds * 1000
  const loop = async () => {
    while (performance.now() < end) {
      const res = await pool.request({ path, method: 'GET', headers: { accept: ACCEPT } })
      await res.body.dump()
      if (res.statusCode === 200) ok++
      else failed++
    }
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: connections }, loop))
  const elapsed = (performance.now() - t0) / 1000
  await pool.close()
  if (failed > 0) console.error(`  ${failed} non-200 answers from ${base}${path}`)
  return ok / elapsed
}

async function hitThroughput(base: string, repo: string, digest: string): Promise<number> {
  let bytes = 0
  const t0 = performance.now()
  for (let round = 0; round < HIT_ROUNDS; round++) {
    const sizes = await Promise.all(
      Array.from({ length: HIT_CLIENTS }, async () => {
        const res = await request(`${base}/v2/${repo}/blobs/${digest}`)
        return readVerified(res.body as AsyncIterable<Buffer>, digest)
      }),
    )
    bytes += sizes.reduce((a, b) => a + b, 0)
  }
  return bytes / MB / ((performance.now() - t0) / 1000)
}

interface Row {
  workload: string
  unit: string
  better: 'lower' | 'higher'
  regmirror: number
  distribution: number
  goal?: { ratio?: number; abs?: number; on: 'ratio' | 'regmirror' }
}

async function main(): Promise<void> {
  const work = await makeTempDir('bench')
  const cleanups: (() => Promise<void>)[] = [() => removeTempDir(work)]
  try {
    console.error('starting upstream distribution and pushing images…')
    const upstream = await startDistribution({ auth: 'none' })
    cleanups.unshift(upstream.stop)
    const images = {
      cold: await pushImage(work, upstream, 'bench/cold', SIZES.cold),
      ttfb: await pushImage(work, upstream, 'bench/ttfb', [SIZES.ttfb]),
      c8: await pushImage(work, upstream, 'bench/c8', SIZES.concurrent),
      c32: await pushImage(work, upstream, 'bench/c32', SIZES.concurrent),
    }
    const distProxy = await startDistribution({ auth: 'none', proxy: { remoteurl: upstream.url } })
    cleanups.unshift(distProxy.stop)
    const regmirror = await startRegmirror(upstream.url, join(work, 'regmirror-data'))
    cleanups.unshift(regmirror.stop)
    const mirrors: Mirror[] = [regmirror, { name: 'distribution', url: distProxy.directUrl, pid: distProxy.pid, stop: distProxy.stop }]

    const results: Record<string, Record<string, number>> = { regmirror: {}, distribution: {} }
    const rss: Record<string, string[]> = { regmirror: [], distribution: [] }
    for (const m of mirrors) {
      const r = results[m.name]!
      console.error(`\n== ${m.name}`)
      let mark = upstream.requests().length
      const cold = await timed(() => pull(m.url, images.cold.repo, 'v1'))
      r.coldSeconds = cold.ms / 1000
      r.coldUpstream = upstreamBytes(upstream, mark) / images.cold.bytes
      console.error(`  cold pull ${(cold.ms / 1000).toFixed(2)} s, upstream ×${r.coldUpstream.toFixed(3)}`)
      rss[m.name]!.push(`after cold pull ${(await peakRssMiB(m.pid)).toFixed(0)}`)

      r.ttfbMs = await ttfb(m.url, images.ttfb.repo, images.ttfb.layers[0]!)
      console.error(`  ttfb ${r.ttfbMs.toFixed(1)} ms`)

      const warm = await timed(() => pull(m.url, images.cold.repo, 'v1'))
      r.warmSeconds = warm.ms / 1000
      console.error(`  warm pull ${r.warmSeconds.toFixed(2)} s`)

      for (const [n, img] of [[8, images.c8], [32, images.c32]] as const) {
        mark = upstream.requests().length
        const c = await timed(() => Promise.all(Array.from({ length: n }, () => pull(m.url, img.repo, 'v1'))))
        r[`c${n}Seconds`] = c.ms / 1000
        r[`c${n}Upstream`] = upstreamBytes(upstream, mark) / img.bytes
        console.error(`  ${n} concurrent cold pulls ${(c.ms / 1000).toFixed(2)} s, upstream ×${r[`c${n}Upstream`]!.toFixed(3)}`)
        rss[m.name]!.push(`after ${n} concurrent ${(await peakRssMiB(m.pid)).toFixed(0)}`)
      }

      r.tagRps = await requestsPerSecond(m.url, `/v2/${images.cold.repo}/manifests/v1`, TAG_SECONDS)
      console.error(`  tag manifest ${r.tagRps.toFixed(0)} req/s`)
      r.hitMBps = await hitThroughput(m.url, images.ttfb.repo, images.ttfb.layers[0]!)
      console.error(`  hit throughput ${r.hitMBps.toFixed(0)} MiB/s`)
      r.peakRss = await peakRssMiB(m.pid)
      console.error(`  peak RSS ${r.peakRss.toFixed(0)} MiB`)
    }

    const R = results.regmirror!
    const D = results.distribution!
    const rows: Row[] = [
      { workload: `cold pull, ${SIZES.cold.length} layers, ${sum(SIZES.cold)} MiB: wall time`, unit: 's', better: 'lower', regmirror: R.coldSeconds!, distribution: D.coldSeconds! },
      { workload: 'cold pull: upstream bytes / image size', unit: '×', better: 'lower', regmirror: R.coldUpstream!, distribution: D.coldUpstream!, goal: { abs: 1.01, on: 'regmirror' } },
      { workload: `time to first byte, cold ${SIZES.ttfb} MiB layer`, unit: 'ms', better: 'lower', regmirror: R.ttfbMs!, distribution: D.ttfbMs! },
      { workload: 'warm pull: wall time', unit: 's', better: 'lower', regmirror: R.warmSeconds!, distribution: D.warmSeconds! },
      { workload: `8 concurrent cold pulls (${sum(SIZES.concurrent)} MiB image): wall time`, unit: 's', better: 'lower', regmirror: R.c8Seconds!, distribution: D.c8Seconds!, goal: { ratio: 0.4, on: 'ratio' } },
      { workload: '8 concurrent cold pulls: upstream bytes / image size', unit: '×', better: 'lower', regmirror: R.c8Upstream!, distribution: D.c8Upstream!, goal: { abs: 1.01, on: 'regmirror' } },
      { workload: `32 concurrent cold pulls (${sum(SIZES.concurrent)} MiB image): wall time`, unit: 's', better: 'lower', regmirror: R.c32Seconds!, distribution: D.c32Seconds!, goal: { ratio: 0.4, on: 'ratio' } },
      { workload: '32 concurrent cold pulls: upstream bytes / image size', unit: '×', better: 'lower', regmirror: R.c32Upstream!, distribution: D.c32Upstream!, goal: { abs: 1.01, on: 'regmirror' } },
      { workload: 'tag manifest requests per second (cached tag, 32 connections)', unit: 'req/s', better: 'higher', regmirror: R.tagRps!, distribution: D.tagRps!, goal: { ratio: 50, on: 'ratio' } },
      { workload: `cache-hit blob throughput (${HIT_CLIENTS} clients × ${HIT_ROUNDS} rounds of ${SIZES.hit} MiB)`, unit: 'MiB/s', better: 'higher', regmirror: R.hitMBps!, distribution: D.hitMBps!, goal: { ratio: 1.1, on: 'ratio' } },
      { workload: 'peak RSS of the server', unit: 'MiB', better: 'lower', regmirror: R.peakRss!, distribution: D.peakRss!, goal: { abs: 120, on: 'regmirror' } },
    ]
    const table = renderTable(rows)
    console.log(table)
    const distVersion = execFileSync('docker-registry', ['--version']).toString().trim()
    const md = [
      '# Benchmark results',
      '',
      `Date: ${new Date().toISOString()}${quick ? ' (--quick: small sizes, not for comparison)' : ''}`,
      `Machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 1024 ** 3).toFixed(0)} GiB; Node ${process.version}; ${distVersion}`,
      '',
      'Both mirrors run on this machine in front of the same upstream (CNCF distribution behind a counting proxy that',
      'measures upstream bytes). The client does what containerd does: tag → index → linux/amd64 manifest → config and',
      'layers three at a time, every body verified against its digest. Ratio is regmirror / distribution.',
      '',
      table,
      '',
      'Peak RSS (VmHWM, MiB) as the run went on:',
      '',
      ...Object.entries(rss).map(([name, list]) => `- ${name}: ${list.join(', ')}`),
      '',
    ].join('\n')
    if (!quick) await writeFile(new URL('./RESULTS.md', import.meta.url), md)
    else console.error('(--quick: bench/RESULTS.md not written)')
  } finally {
    for (const c of cleanups) await c().catch(() => {})
  }
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0)
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return 'n/a'
  if (Math.abs(n) >= 100) return n.toFixed(0)
  if (Math.abs(n) >= 10) return n.toFixed(1)
  return n.toFixed(3)
}

function renderTable(rows: Row[]): string {
  const lines = [
    '| workload | unit | better | regmirror | distribution | ratio | goal |',
    '| --- | --- | --- | ---: | ---: | ---: | --- |',
  ]
  for (const r of rows) {
    const ratio = r.regmirror / r.distribution
    let goal = ''
    if (r.goal?.on === 'ratio' && r.goal.ratio !== undefined) {
      const met = r.better === 'lower' ? ratio <= r.goal.ratio : ratio >= r.goal.ratio
      goal = `${r.better === 'lower' ? '≤' : '≥'} ${r.goal.ratio}×: ${met ? 'met' : 'missed'}`
    } else if (r.goal?.on === 'regmirror' && r.goal.abs !== undefined) {
      const met = r.regmirror <= r.goal.abs
      goal = `≤ ${r.goal.abs}: ${met ? 'met' : 'missed'}`
    }
    lines.push(`| ${r.workload} | ${r.unit} | ${r.better} | ${fmt(r.regmirror)} | ${fmt(r.distribution)} | ${fmt(ratio)} | ${goal} |`)
  }
  return lines.join('\n')
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
