/**
 * The bucket tier's bound on a real bucket (issue #17): radosgw, a real redis-server, regmirror's S3 store and two
 * replicas' BucketTier on them. Six blobs of 1 MiB committed, read in a known order on two replicas, a bound of
 * 3.5 MiB: one pass deletes the least recently read across both replicas, the bucket is within the bound after the
 * pass, and what was read last is still there, whole. Then the same through a running mirror (`storage.s3.maxSize`,
 * `storage.s3.evictInterval`): blobs pulled one after another, the first pulled is deleted and the bucket comes back
 * within its bound.
 */
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { resolveConfig } from '../../src/config/load.js'
import { Kv } from '../../src/kv.js'
import { createLogger } from '../../src/log.js'
import { parseDigest } from '../../src/oci/reference.js'
import { BucketTier } from '../../src/storage/bucket-tier.js'
import { S3Store } from '../../src/storage/s3-store.js'
import { requirePrograms } from '../helpers/programs.js'
import { RADOSGW_PROGRAMS, startRadosgw } from '../helpers/radosgw.js'
import { startRedis } from '../helpers/redis.js'
import { sleep } from '../helpers/sleep.js'
import { storageConfig } from '../helpers/bucket.js'
import { startDistribution } from '../helpers/distribution.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { pushLayout } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'

const MiB = 1024 * 1024
const log = createLogger('silent')

if (requirePrograms(t, [...RADOSGW_PROGRAMS, 'redis-server', 'docker-registry', 'skopeo'])) {
  t.test('eviction on radosgw: least recently used across replicas, within the bound after a pass', async (t) => {
    const rgw = await startRadosgw({ t })
    const redis = await startRedis({ t })
    const bucket = await rgw.createBucket('evict')
    const config = resolveConfig({ storage: storageConfig(rgw, bucket, { maxSize: '3.5MiB' }) })
    const store = new S3Store(config.storage.s3)
    t.teardown(() => store.close())
    const kv = await Kv.open({ redis: redis.url, prefix: 'evict' }, log)
    t.teardown(() => kv.close())

    const blobs = Array.from({ length: 6 }, () => randomBytes(MiB))
    const digests = blobs.map((b) => `sha256:${createHash('sha256').update(b).digest('hex')}`)
    for (const [i, b] of blobs.entries()) {
      const upload = store.upload(parseDigest(digests[i]!))
      await upload.write(b)
      await upload.complete()
    }
    const options = {
      prefix: 'evict',
      maxSize: config.storage.s3.maxSize!,
      touchIntervalMs: 1,
      evictIntervalMs: 60_000,
      protectMs: 0,
    }
    const a = new BucketTier(store, kv, undefined, { ...options, self: 'a' }, log)
    const b = new BucketTier(store, kv, undefined, { ...options, self: 'b' }, log)
    // Read order, oldest first, alternating replicas: 4 0 5 2 1 3.
    const now = Date.now()
    for (const [k, i] of [4, 0, 5, 2, 1, 3].entries()) (k % 2 === 0 ? a : b).touched(digests[i]!, now - 10_000 + k * 1000)
    await sleep(200)

    const pass = await a.evictOnce()
    t.ok(pass, 'one replica ran the pass')
    t.equal(pass?.before, 6 * MiB)
    t.same(
      pass?.deleted,
      [4, 0, 5].map((i) => digests[i]),
      'the three least recently read, oldest first',
    )
    const left: { digest: string; size: number }[] = []
    for await (const o of store.list()) left.push(o)
    const total = left.reduce((n, o) => n + o.size, 0)
    t.ok(total <= config.storage.s3.maxSize!, `the bucket holds ${total} bytes after the pass, within the bound`)
    t.same(left.map((o) => o.digest).sort(), [2, 1, 3].map((i) => digests[i]).sort(), 'the most recently read stay')
    const { body } = await store.get(parseDigest(digests[3]!))
    const chunks: Buffer[] = []
    for await (const c of body) chunks.push(c as Buffer)
    t.same(Buffer.concat(chunks), blobs[3], 'and are whole')
    t.same(await b.evictOnce().then((p) => p?.deleted), [], 'the next pass (another replica) has nothing to do')
  })

  // With Redis the replica's access times go to a sorted set; without it, two workers share theirs through the
  // primary's records and the first worker alone runs the passes.
  const through = (shared: 'redis' | 'workers') => async (t: Test) => {
    const rgw = await startRadosgw({ t })
    const redis = shared === 'redis' ? await startRedis({ t }) : undefined
    const upstream = await startDistribution({ auth: 'none', t })
    const work = await makeTempDir('evict-mirror')
    t.teardown(() => removeTempDir(work))
    const bucket = await rgw.createBucket('evictm')
    const image = await buildOciLayout(join(work, 'image'), { tag: 'v1', layerSizes: [MiB, MiB, MiB] })
    await pushLayout(image.layoutDir, 'v1', upstream.hostPort, 'e2e/evict')
    // Short intervals so a pass runs every second and protects only the last two seconds' accesses.
    const limits = { maxSize: '2.5MiB', evictInterval: '1s', redirectExpiry: '1s' }
    const file = join(work, 'regmirror.yaml')
    await writeFile(file, JSON.stringify({ cache: { touchInterval: '1s' }, storage: storageConfig(rgw, bucket, limits) }))
    const mirror = await startMirrorProcess([
      '--config',
      file,
      '--data',
      join(work, 'data'),
      ...(redis ? ['--redis', redis.url, '--workers', '1'] : ['--workers', '2']),
      '--upstream',
      `hub=${upstream.url}`,
      '--default-upstream',
      'hub',
    ])
    t.teardown(() => mirror.program.stop())
    const config = resolveConfig({ storage: storageConfig(rgw, bucket) })
    const store = new S3Store(config.storage.s3)
    t.teardown(() => store.close())
    const inBucket = async () => {
      const found = new Map<string, number>()
      for await (const o of store.list()) found.set(o.digest, o.size)
      return found
    }

    for (const layer of image.layerDigests) {
      const res = await fetch(`${mirror.url}/v2/e2e/evict/blobs/${layer}`)
      t.equal(res.status, 200, `${layer.slice(7, 19)} pulled through the mirror`)
      await res.arrayBuffer()
      for (let i = 0; i < 200 && !(await inBucket()).has(layer); i++) await sleep(100)
      await sleep(2500) // past the protection of the last access
    }
    let now = await inBucket()
    for (let i = 0; i < 300 && [...now.values()].reduce((n, x) => n + x, 0) > 2.5 * MiB; i++) now = (await sleep(100), await inBucket())
    const total = [...now.values()].reduce((n, x) => n + x, 0)
    t.ok(total <= 2.5 * MiB, `the bucket came back within its bound (${total} bytes)`)
    t.notOk(now.has(image.layerDigests[0]!), 'the blob accessed first was deleted')
    t.ok(now.has(image.layerDigests[2]!), 'the blob accessed last stays')
  }
  t.test('a running mirror keeps its bucket within storage.s3.maxSize, oldest access out first', through('redis'))
  t.test('the same with two workers and no Redis', through('workers'))
}
