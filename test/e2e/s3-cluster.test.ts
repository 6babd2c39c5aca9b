/**
 * Replicas on one bucket (issue #17), as processes: three regmirror replicas with `storage.backend: s3` on a real
 * radosgw, one real redis-server, nginx round-robin in front, a CNCF distribution upstream behind the counting proxy.
 *
 * - concurrent cold skopeo pulls through nginx fetch each blob from upstream once (the fill lease), and every blob
 *   ends up in the bucket;
 * - a replica restarted with an empty disk serves the image from the bucket (the tag's record from Redis), with no
 *   upstream request;
 * - kill -9 of the lease holder while it uploads a blob and another replica streams it from the holder: no object
 *   under the blob's key, the other replica's pull completes (from upstream at the byte reached), and the holder,
 *   restarted, fetches and commits the blob (a single replica's kill -9 is in test/integration/storage-s3.test.ts).
 */
import { createHash } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { freePort } from '../helpers/free-port.js'
import { startMirrorProcess, type MirrorProcess } from '../helpers/mirror-process.js'
import { startNginx } from '../helpers/nginx.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { requirePrograms } from '../helpers/programs.js'
import { clientOf } from '../helpers/bucket.js'
import { RADOSGW_PROGRAMS, startRadosgw, type Radosgw } from '../helpers/radosgw.js'
import { startRedis } from '../helpers/redis.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { sleep } from '../helpers/sleep.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'

const MiB = 1024 * 1024
const SECRET = 'e2e-cluster-secret-0123456789'

interface Replica {
  url: string
  port: number
  dataDir: string
  process: MirrorProcess
}

interface Site {
  rgw: Radosgw
  bucket: string
  s3: S3Client
  redis: string
  upstream: Distribution
  urls: string[]
  work: string
}

/** The configuration file that puts the replicas on the bucket (JSON is YAML). */
async function storageConfig(site: Site): Promise<string> {
  const file = join(site.work, 'storage.yaml')
  const s3 = { endpoint: site.rgw.endpoint, region: site.rgw.region, bucket: site.bucket, pathStyle: true }
  const keys = { accessKeyId: site.rgw.accessKeyId, secretAccessKey: site.rgw.secretAccessKey }
  await writeFile(file, JSON.stringify({ storage: { backend: 's3', s3: { ...s3, ...keys } } }))
  return file
}

async function startReplica(t: Test, site: Site, i: number): Promise<Replica> {
  const url = site.urls[i]!
  const port = Number(new URL(url).port)
  const dataDir = join(site.work, `replica-${i}`)
  const args = ['--config', await storageConfig(site), '--listen', `127.0.0.1:${port}`, '--data', dataDir]
  args.push('--redis', site.redis, '--self', url)
  args.push(...site.urls.flatMap((u) => ['--peer', u]), '--upstream', `hub=${site.upstream.url}`, '--default-upstream', 'hub')
  const p = await startMirrorProcess(args, { REGMIRROR_CLUSTER_SECRET: SECRET })
  t.teardown(() => p.program.stop())
  return { url, port, dataDir, process: p }
}

async function startSite(t: Test, name: string, upstreamBytesPerSecond?: number): Promise<Site> {
  const work = await makeTempDir(name)
  t.teardown(() => removeTempDir(work))
  const rgw = await startRadosgw({ t })
  const bucket = await rgw.createBucket(name)
  const s3 = clientOf(rgw)
  t.teardown(() => s3.destroy())
  const redis = await startRedis({ t })
  const upstream = await startDistribution({ auth: 'none', linkBytesPerSecond: upstreamBytesPerSecond, t })
  const urls = (await Promise.all([0, 1, 2].map(() => freePort()))).map((p) => `http://127.0.0.1:${p}`)
  return { rgw, bucket, s3, redis: `redis://127.0.0.1:${redis.port}`, upstream, urls, work }
}

/** Keys in the bucket whose name ends with the digest's hex (the layout is storage/'s; the name is the digest). */
async function objectsOf(site: Site, digest: string): Promise<string[]> {
  const hex = digest.slice('sha256:'.length)
  const listed = await site.s3.send(new ListObjectsV2Command({ Bucket: site.bucket }))
  return (listed.Contents ?? []).map((o) => o.Key ?? '').filter((k) => k.endsWith(hex))
}

function blobGets(upstream: Distribution, digest: string, since = 0) {
  return upstream
    .requests()
    .slice(since)
    .filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`))
}

async function pullWithSkopeo(host: string, repo: string, dest: string): Promise<void> {
  await skopeoCopy(`docker://${host}/${repo}:v1`, `oci:${dest}:v1`, { preserveDigests: true, timeoutMs: 180_000 })
}

if (requirePrograms(t, [...RADOSGW_PROGRAMS, 'docker-registry', 'skopeo', 'redis-server', 'nginx'])) {
  t.test('three replicas on one bucket: each blob fetched once; an empty replica serves from the bucket', async (t) => {
    const site = await startSite(t, 's3cl')
    const replicas: Replica[] = []
    for (const i of [0, 1, 2]) replicas.push(await startReplica(t, site, i))
    const lb = await startNginx(site.urls, { t })
    const lbHost = new URL(lb.url).host

    const image = await buildOciLayout(join(site.work, 'image'), { tag: 'v1', layerSizes: [9 * MiB, 9 * MiB, 13 * MiB] })
    await pushLayout(image.layoutDir, 'v1', site.upstream.hostPort, 'e2e/app')
    const digests = [image.images[0]!.configDigest, ...image.layerDigests]
    await Promise.all([0, 1, 2, 3, 4, 5].map((n) => pullWithSkopeo(lbHost, 'e2e/app', join(site.work, `pull-${n}`))))
    for (const d of digests) {
      const gets = blobGets(site.upstream, d)
      t.equal(
        gets.filter((g) => g.headers.range === undefined).length,
        1,
        `${d.slice(7, 19)}: one upstream download across the three replicas (any other request a resume)`,
        { gets: gets.map((g) => ({ status: g.status, range: g.headers.range })) },
      )
    }
    // The holder commits after its fill verified; give the last upload a moment to complete.
    for (const d of digests) {
      let keys = await objectsOf(site, d)
      for (let i = 0; i < 100 && keys.length === 0; i++) keys = (await sleep(100), await objectsOf(site, d))
      t.equal(keys.length, 1, `${d.slice(7, 19)} is one object in the bucket`)
    }

    // Replica 0 restarted with an empty disk: the tag's resolution comes from Redis (fresh within tagTtl), the manifest
    // and the blobs from the bucket; the upstream sees no request.
    const victim = replicas[0]!
    await victim.process.program.stop()
    await rm(victim.dataDir, { recursive: true, force: true })
    const restarted = await startReplica(t, site, 0)
    const before = site.upstream.requests().length
    await pullWithSkopeo(new URL(restarted.url).host, 'e2e/app', join(site.work, 'after-restart'))
    const asked = site.upstream
      .requests()
      .slice(before)
      .map((r) => `${r.method} ${r.path}`)
    t.same(asked, [], 'the restarted replica asked the upstream nothing')
  })

  t.test('kill -9 of the lease holder mid-upload: no object; a replica streaming from it completes; restart commits', async (t) => {
    // A slow upstream link (4 MB/s) keeps the 32 MiB layer's fill, and so its multipart upload, running for seconds.
    const site = await startSite(t, 's3kill', 4e6)
    const holder = await startReplica(t, site, 0)
    const other = await startReplica(t, site, 1)
    const image = await buildOciLayout(join(site.work, 'image'), { tag: 'v1', layerSizes: [32 * MiB] })
    await pushLayout(image.layoutDir, 'v1', site.upstream.hostPort, 'e2e/big')
    const layer = image.layerDigests[0]!
    const path = `/v2/e2e/big/blobs/${layer}`

    // The first replica to miss takes the fill lease and fetches; the second, missing it meanwhile, streams from it.
    const first = await reading(`${holder.url}${path}`, 8 * MiB)
    const second = await reading(`${other.url}${path}`, 2 * MiB)
    const downloads = blobGets(site.upstream, layer).filter((r) => r.headers.range === undefined)
    t.equal(downloads.length, 1, 'one upstream download while both replicas serve the blob')
    process.kill(-holder.process.program.pid, 'SIGKILL')
    await holder.process.program.exit
    await first.cancel()
    t.same(await objectsOf(site, layer), [], 'no object under the blob key after the kill')
    t.equal(sha256(await second.rest()), layer, 'the replica that streamed from the holder completes the pull, verified')

    // Restarted, the holder's own stale lease is no obstacle: it fetches the blob and commits it.
    const again = await startReplica(t, site, 0)
    const body = Buffer.from(await (await fetch(`${again.url}${path}`)).arrayBuffer())
    t.equal(sha256(body), layer, 'after the restart the pull completes, verified')
    let keys = await objectsOf(site, layer)
    for (let i = 0; i < 300 && keys.length === 0; i++) keys = (await sleep(100), await objectsOf(site, layer))
    t.equal(keys.length, 1, 'and the blob is committed to the bucket')
    const head = await site.s3.send(new HeadObjectCommand({ Bucket: site.bucket, Key: keys[0]! }))
    t.equal(head.ContentLength, body.length, 'the whole blob')
  })
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** A GET whose body was read until `atLeast` bytes arrived; then cancel() it or read the rest. */
async function reading(url: string, atLeast: number): Promise<{ cancel(): Promise<void>; rest(): Promise<Buffer> }> {
  const res = await fetch(url)
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`)
  const reader = res.body!.getReader()
  const chunks: Buffer[] = []
  let received = 0
  while (received < atLeast) {
    const { value, done } = await reader.read()
    if (done) break
    chunks.push(Buffer.from(value))
    received += value.length
  }
  return {
    cancel: () => reader.cancel().catch(() => {}),
    rest: async () => {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return Buffer.concat(chunks)
        chunks.push(Buffer.from(value))
      }
    },
  }
}
