/**
 * Three replicas that fetch each blob once (issue #13), as processes: a real redis-server for tag records and
 * tokens, nginx round-robin in front standing in for the Kubernetes Service, a CNCF distribution upstream behind
 * the counting proxy. 24 concurrent cold pulls through nginx cost the upstream the image once; a replica killed
 * with kill -9 in the middle of a pull: clients that retry complete with verified bytes, and every replica's
 * cache verifies clean.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { runCli } from '../helpers/cli.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { freePort } from '../helpers/free-port.js'
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js'
import { startNginx } from '../helpers/nginx.js'
import { buildOciLayout, type OciLayout } from '../helpers/oci-image.js'
import { requirePrograms } from '../helpers/programs.js'
import { startRedis } from '../helpers/redis.js'
import { pushLayout } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'

const MiB = 1024 * 1024
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'

interface Replica {
  url: string
  dataDir: string
  process: MirrorProcess
}

async function startReplicas(t: Test, upstream: Distribution, redis: string, work: string): Promise<Replica[]> {
  const ports = await Promise.all([0, 1, 2].map(() => freePort()))
  const urls = ports.map((p) => `http://127.0.0.1:${p}`)
  const replicas: Replica[] = []
  for (const [i, url] of urls.entries()) {
    const dataDir = join(work, `replica-${i}`)
    const args = ['--listen', `127.0.0.1:${ports[i]}`, '--data', dataDir, '--redis', redis, '--self', url]
    args.push(...urls.flatMap((u) => ['--peer', u]), '--upstream', `hub=${upstream.url}`, '--default-upstream', 'hub')
    const p = await startMirrorProcess(args, { REGMIRROR_CLUSTER_SECRET: 'e2e-cluster-secret-0123456789' })
    t.teardown(() => p.program.stop())
    replicas.push({ url, dataDir, process: p })
  }
  return replicas
}

/** GET with its body checked against `digest`; retried like the Docker daemon retries a layer (5 tries). */
async function fetchVerified(agent: Agent, url: string, digest: string, accept?: string): Promise<Buffer> {
  let last: unknown
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      const res = await request(url, { dispatcher: agent, headers: accept ? { accept } : {} })
      const chunks: Buffer[] = []
      for await (const c of res.body) chunks.push(c as Buffer)
      const body = Buffer.concat(chunks)
      if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${body.toString().slice(0, 200)}`)
      if (`sha256:${createHash('sha256').update(body).digest('hex')}` !== digest) throw new Error('wrong bytes')
      return body
    } catch (err) {
      last = err
      await new Promise((r) => setTimeout(r, 200 * attempt))
    }
  }
  throw new Error(`${url}: ${(last as Error).message}`)
}

/** A node's pull: the manifest by digest, then config and layers three at a time, every body verified. */
async function pull(base: string, repo: string, img: OciLayout): Promise<void> {
  const agent = new Agent({ connections: 4 })
  try {
    const image = img.images[0]!
    await fetchVerified(agent, `${base}/v2/${repo}/manifests/${image.manifestDigest}`, image.manifestDigest, ACCEPT)
    const blobs = [image.configDigest, ...image.layerDigests]
    await Promise.all(
      [0, 1, 2].map(async (lane) => {
        for (let i = lane; i < blobs.length; i += 3) await fetchVerified(agent, `${base}/v2/${repo}/blobs/${blobs[i]}`, blobs[i]!)
      }),
    )
  } finally {
    await agent.close()
  }
}

/** Body bytes of the blob GETs the upstream answered for these digests. */
function upstreamBlobBytes(upstream: Distribution, digests: string[]): number {
  return upstream
    .requests()
    .filter((r) => r.method === 'GET' && digests.some((d) => r.path.endsWith(`/blobs/${d}`)))
    .reduce((n, r) => n + r.bytes, 0)
}

if (requirePrograms(t, ['docker-registry', 'skopeo', 'redis-server', 'nginx'])) {
  t.test('three replicas behind nginx: 24 cold pulls fetch each blob once; kill -9 of one mid-pull loses nothing', async (t) => {
    const work = await makeTempDir('cluster')
    t.teardown(() => removeTempDir(work))
    // A link to "Docker Hub" of ~40 MB/s, so pulls are still running when a replica is killed.
    const upstream = await startDistribution({ auth: 'none', linkBytesPerSecond: 40e6, t })
    const redis = await startRedis({ t })
    const replicas = await startReplicas(t, upstream, `redis://127.0.0.1:${redis.port}`, work)
    const lb = await startNginx(
      replicas.map((r) => r.url),
      { t },
    )

    const first = await buildOciLayout(join(work, 'first'), { tag: 'v1', layerSizes: [12 * MiB, 12 * MiB, 12 * MiB] })
    await pushLayout(first.layoutDir, 'v1', upstream.hostPort, 'e2e/first')
    await Promise.all(Array.from({ length: 24 }, () => pull(lb.url, 'e2e/first', first)))
    const digests = [first.images[0]!.configDigest, ...first.layerDigests]
    const blobBytes = first.totalBytes - first.images[0]!.manifestSize
    const ratio = upstreamBlobBytes(upstream, digests) / blobBytes
    t.ok(ratio <= 1.01, `24 pulls through 3 replicas cost the upstream ${ratio.toFixed(3)}× the image's blobs (at most 1.01)`)
    for (const d of digests) {
      const gets = upstream.requests().filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${d}`))
      // Once means one download from the start; a connection the upstream side breaks is resumed with Range from the
      // byte reached (seen here under load), which is still the one download, not a second replica's.
      t.equal(
        gets.filter((g) => g.headers.range === undefined).length,
        1,
        `${d.slice(7, 19)}: one upstream download from the start, any other request a resume`,
        {
          gets: gets.map((g) => ({ bytes: g.bytes, status: g.status, range: g.headers.range })),
          warnings: replicas.flatMap((r) => r.process.logs().filter((l) => l.includes('"level":40') || l.includes('"level":50'))),
        },
      )
    }

    const second = await buildOciLayout(join(work, 'second'), { tag: 'v1', layerSizes: [24 * MiB, 24 * MiB, 24 * MiB] })
    await pushLayout(second.layoutDir, 'v1', upstream.hostPort, 'e2e/second')
    const pulls = Promise.allSettled(Array.from({ length: 12 }, () => pull(lb.url, 'e2e/second', second)))
    await new Promise((r) => setTimeout(r, 600))
    const victim = replicas[1]!
    process.kill(-victim.process.program.pid, 'SIGKILL')
    const results = await pulls
    t.same(
      results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
      [],
      'every pull completed, verified, with a replica killed in the middle',
    )
    await victim.process.program.exit
    for (const r of replicas) {
      if (r !== victim) await r.process.program.stop()
      const v = await runCli(['verify', '--data', r.dataDir])
      t.equal(v.code, 0, `replica ${r.url}: ${v.stdout.trim()}`)
      t.notMatch(v.stdout, /corrupt/)
    }
  })
}
