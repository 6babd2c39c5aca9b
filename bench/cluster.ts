/**
 * Replicas (issue #13): N concurrent cold pulls through nginx round-robin in front of three servers, three ways:
 *
 *   cluster      three regmirror replicas with peers (--peer/--self, a cluster secret) and a shared redis-server
 *   independent  three regmirror replicas that know nothing of each other (each its own cache, no Redis)
 *   distribution three CNCF distribution instances in proxy mode
 *
 * The upstream is a CNCF distribution behind the counting proxy, paced to --link-mb MB/s (the thin link a mirror
 * exists to spare). Reported per setup and N: upstream blob bytes as a multiple of the image's blobs, and the wall
 * time until the last pull finished; ratios against distribution. Every pull verifies every body it reads.
 * Each round starts every setup fresh (empty caches), the setups in rotating order.
 *
 *   npm run build && node --import tsx bench/cluster.ts [--n 8,32] [--rounds 2] [--link-mb 60] [--mib 16,16,32]
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startProgram, type ChildProgram } from '../test/helpers/child-program.js'
import { startDistribution, type Distribution } from '../test/helpers/distribution.js'
import { freePort } from '../test/helpers/free-port.js'
import { startNginx } from '../test/helpers/nginx.js'
import { buildOciLayout } from '../test/helpers/oci-image.js'
import { startRedis } from '../test/helpers/redis.js'
import { pushLayout } from '../test/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/helpers/temp-dir.js'
import { pull } from './client.js'
import { CLI } from './servers.js'

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '8,32' },
    rounds: { type: 'string', default: '2' },
    'link-mb': { type: 'string', default: '60' },
    mib: { type: 'string', default: '16,16,32' },
  },
})
const NS = values.n.split(',').map(Number)
const ROUNDS = Number(values.rounds)
const MiB = 1024 * 1024
const SETUPS = ['cluster', 'independent', 'distribution'] as const
type Setup = (typeof SETUPS)[number]
const REPO = 'bench/app'
const SECRET = 'bench-cluster-secret-0123456789'

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const log = (msg: string) => console.error(`[cluster] ${msg}`)

interface Backends {
  urls: string[]
  stop(): Promise<void>
}

async function regmirrorReplicas(upstream: Distribution, work: string, peers: boolean): Promise<Backends> {
  const ports = await Promise.all([0, 1, 2].map(() => freePort()))
  const urls = ports.map((p) => `http://127.0.0.1:${p}`)
  const redis = peers ? await startRedis() : undefined
  const programs: ChildProgram[] = []
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGMIRROR_')))
  for (const [i, url] of urls.entries()) {
    const args = [CLI, 'serve', '--listen', `127.0.0.1:${ports[i]}`, '--data', join(work, `r${i}`), '--log-level', 'warn']
    args.push('--upstream', `hub=${upstream.url}`, '--default-upstream', 'hub', '--max-size', '10GiB')
    if (redis) args.push('--redis', `redis://127.0.0.1:${redis.port}`, '--self', url, ...urls.flatMap((u) => ['--peer', u]))
    programs.push(startProgram(`regmirror-${i}`, process.execPath, args, { env: { ...env, REGMIRROR_CLUSTER_SECRET: SECRET } }))
  }
  await Promise.all(urls.map((u) => waitFor(`${u}/readyz`)))
  return {
    urls,
    stop: async () => {
      await Promise.all(programs.map((p) => p.stop()))
      await redis?.stop()
    },
  }
}

async function distributionProxies(upstream: Distribution): Promise<Backends> {
  const proxies = await Promise.all([0, 1, 2].map(() => startDistribution({ proxy: { remoteurl: upstream.url } })))
  return { urls: proxies.map((p) => p.directUrl), stop: async () => void (await Promise.all(proxies.map((p) => p.stop()))) }
}

/**
 * N pulls started at once, each retried up to five times when it fails, as the Docker daemon retries a layer
 * (distribution's proxy mode closes some connections under concurrent cold pulls); wall time until the last.
 */
async function pulls(base: string, n: number): Promise<{ ms: number; retries: number }> {
  let retries = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await pull(base, REPO, 'v1')
        } catch (err) {
          if (attempt === 5) throw err
          retries++
          await new Promise((r) => setTimeout(r, 200 * attempt))
        }
      }
    }),
  )
  return { ms: performance.now() - started, retries }
}

async function waitFor(url: string): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${url} not ready`)
}

async function main(): Promise<void> {
  const work = await makeTempDir('bench-cluster')
  const upstream = await startDistribution({ auth: 'none', linkBytesPerSecond: Number(values['link-mb']) * 1e6 })
  try {
    const sizes = values.mib.split(',').map((m) => Number(m) * MiB)
    const image = await buildOciLayout(join(work, 'image'), { tag: 'v1', layerSizes: sizes })
    await pushLayout(image.layoutDir, 'v1', upstream.hostPort, REPO)
    const blobBytes = image.totalBytes - image.images[0]!.manifestSize
    const digests = [image.images[0]!.configDigest, ...image.layerDigests]
    log(`image ${(blobBytes / MiB).toFixed(0)} MiB in ${digests.length} blobs; upstream link ${values['link-mb']} MB/s`)

    const results = new Map<string, { ms: number[]; ratio: number[]; retries: number }>()
    for (let round = 0; round < ROUNDS; round++) {
      for (const n of NS) {
        for (let i = 0; i < SETUPS.length; i++) {
          const setup: Setup = SETUPS[(i + round) % SETUPS.length]!
          const dir = join(work, `${setup}-${n}-${round}`)
          const backends =
            setup === 'distribution' ? await distributionProxies(upstream) : await regmirrorReplicas(upstream, dir, setup === 'cluster')
          const lb = await startNginx(backends.urls, { retryOnError: false })
          const before = upstream.requests().length
          try {
            const { ms, retries } = await pulls(lb.url, n)
            await new Promise((r) => setTimeout(r, 300)) // the counting proxy's records of finished bodies
            const bytes = upstream
              .requests()
              .slice(before)
              .filter((r) => r.method === 'GET' && digests.some((d) => r.path.endsWith(`/blobs/${d}`)))
              .reduce((sum, r) => sum + r.bytes, 0)
            const key = `${setup}/${n}`
            const row = results.get(key) ?? { ms: [], ratio: [], retries: 0 }
            row.ms.push(ms)
            row.ratio.push(bytes / blobBytes)
            row.retries += retries
            results.set(key, row)
            const upstreamX = (bytes / blobBytes).toFixed(2)
            log(`round ${round + 1} ${setup} n=${n}: ${(ms / 1000).toFixed(2)} s, upstream ${upstreamX}× the image, ${retries} retried`)
          } finally {
            await lb.stop()
            await backends.stop()
            await removeTempDir(dir)
          }
        }
      }
    }

    const lines = [
      `| pulls | setup | upstream bytes (× image) | wall (s, median of ${ROUNDS}) | wall vs distribution | pulls retried |`,
      '|---|---|---|---|---|---|',
    ]
    for (const n of NS) {
      const dist = median(results.get(`distribution/${n}`)!.ms)
      for (const setup of SETUPS) {
        const r = results.get(`${setup}/${n}`)!
        const ratios = [...new Set(r.ratio.map((x) => x.toFixed(2)))].join(', ')
        lines.push(
          `| ${n} | ${setup} | ${ratios} | ${(median(r.ms) / 1000).toFixed(2)} | ${(median(r.ms) / dist).toFixed(2)}× | ${r.retries} |`,
        )
      }
    }
    console.log(lines.join('\n'))
  } finally {
    await upstream.stop()
    await removeTempDir(work)
  }
}

await main()
