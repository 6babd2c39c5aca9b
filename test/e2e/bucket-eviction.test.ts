/**
 * The bucket tier's bound on a real bucket (issue #17): radosgw, a real redis-server, regmirror's S3 store and two
 * replicas' BucketTier on them. Six blobs of 1 MiB committed, read in a known order on two replicas, a bound of
 * 3.5 MiB: one pass deletes the least recently read across both replicas, the bucket is within the bound after the
 * pass, and what was read last is still there, whole.
 */
import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
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

const MiB = 1024 * 1024
const log = createLogger('silent')

if (requirePrograms(t, [...RADOSGW_PROGRAMS, 'redis-server'])) {
  t.test('eviction on radosgw: least recently used across replicas, within the bound after a pass', async (t) => {
    const rgw = await startRadosgw({ t })
    const redis = await startRedis({ t })
    const bucket = await rgw.createBucket('evict')
    const config = resolveConfig({
      storage: {
        backend: 's3',
        s3: {
          endpoint: rgw.endpoint,
          region: rgw.region,
          bucket,
          pathStyle: true,
          accessKeyId: rgw.accessKeyId,
          secretAccessKey: rgw.secretAccessKey,
          maxSize: '3.5MiB',
        },
      },
    })
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
}
