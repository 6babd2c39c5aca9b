/**
 * The cluster parts of object storage against a real redis-server (issue #17): the fill lease (one replica fills a
 * digest; the others learn who; a dead holder's lease lapses; a restarted replica does not wait for its own past
 * lease; a Redis outage lets each replica fill on its own) and the bucket tier's eviction order, lock and
 * protections, over an in-memory listing (the radosgw test in bucket-eviction.test.ts runs it on a real bucket).
 */
import t, { type Test } from 'tap'
import { Kv } from '../../src/kv.js'
import { createLogger } from '../../src/log.js'
import { BucketTier, type BucketTierOptions } from '../../src/storage/bucket-tier.js'
import { FillLeases } from '../../src/storage/fill-lease.js'
import type { StoredObject } from '../../src/storage/object-store.js'
import { requirePrograms } from '../helpers/programs.js'
import { startRedis, type Redis } from '../helpers/redis.js'
import { sleep } from '../helpers/sleep.js'

const log = createLogger('silent')
const digestOf = (n: number): string => `sha256:${n.toString(16).padStart(64, '0')}`
const A = 'http://10.0.0.1:5000'
const B = 'http://10.0.0.2:5000'

async function kvOn(t: Test, redis: Redis): Promise<Kv> {
  const kv = await Kv.open({ redis: redis.url, prefix: 'lease-test' }, log)
  t.teardown(() => kv.close())
  return kv
}

/** A bucket listing in memory: what list() and delete() of the real store do, and a record of deletions. */
function memoryBucket(objects: StoredObject[]) {
  const live = new Map(objects.map((o) => [o.digest, o]))
  return {
    live,
    async *list() {
      yield* [...live.values()]
    },
    async delete(d: { value: string }) {
      live.delete(d.value)
    },
  }
}

const tierOptions = (o: Partial<BucketTierOptions> = {}): BucketTierOptions => ({
  prefix: 'tier-test',
  maxSize: 300,
  touchIntervalMs: 60_000,
  evictIntervalMs: 60_000,
  protectMs: 0,
  self: A,
  ...o,
})

if (requirePrograms(t, ['redis-server'])) {
  t.test('fill lease: one holder, the others learn its address, release hands it on', async (t) => {
    const redis = await startRedis({ t })
    const kv = await kvOn(t, redis)
    const a = new FillLeases(kv, 'p', A, log)
    const b = new FillLeases(kv, 'p', B, log)
    const d = digestOf(1)
    const first = await a.take(d)
    t.ok('held' in first, 'the first replica takes the lease')
    t.same(await b.take(d), { holder: A }, 'another replica is told who fills it')
    t.same(await a.take(d), { holder: A }, 'the holder itself, while filling, does not take it twice')
    t.equal(await b.held(d), true, 'eviction sees the lease')
    if ('held' in first) await first.held.release()
    t.equal(await b.held(d), false, 'released when the fill ended')
    const second = await b.take(d)
    t.ok('held' in second, 'the next miss takes it')
    if ('held' in second) await second.held.release()
  })

  t.test("fill lease: a dead holder's lease lapses; a restarted replica's own stale lease is taken back", async (t) => {
    const redis = await startRedis({ t })
    const kv = await kvOn(t, redis)
    const dying = new FillLeases(kv, 'p', A, log, 400)
    const d = digestOf(2)
    const taken = await dying.take(d)
    t.ok('held' in taken)
    // The holder "dies": it stops renewing without releasing.
    if ('held' in taken) (taken.held as unknown as { timer: NodeJS.Timeout }).timer.close()
    const other = new FillLeases(kv, 'p', B, log, 400)
    let answer = await other.take(d)
    for (let i = 0; i < 100 && !('held' in answer); i++) {
      await sleep(50)
      answer = await other.take(d)
    }
    t.ok('held' in answer, 'after the expiry another replica takes the lease')

    const e = digestOf(3)
    const before = new FillLeases(kv, 'p', A, log)
    t.ok('held' in (await before.take(e)), 'held by A before its restart')
    const restarted = new FillLeases(kv, 'p', A, log)
    const again = await restarted.take(e)
    t.ok('held' in again, 'A restarted (no fill of that digest running) takes it back at once')
    if ('held' in again) await again.held.release()
    if ('held' in answer) await answer.held.release()
  })

  t.test('fill lease: Redis gone → unavailable (each replica fills on its own)', async (t) => {
    const redis = await startRedis({ t })
    const kv = await kvOn(t, redis)
    await redis.stop()
    t.same(await new FillLeases(kv, 'p', A, log).take(digestOf(4)), { unavailable: true })
  })

  t.test('bucket tier: least recently used across replicas go first, down to the bound', async (t) => {
    const redis = await startRedis({ t })
    const kv = await kvOn(t, redis)
    const old = new Date(Date.now() - 3_600_000)
    const bucket = memoryBucket([1, 2, 3, 4, 5].map((n) => ({ digest: digestOf(n), size: 100, lastModified: old })))
    const a = new BucketTier(bucket, kv, undefined, tierOptions(), log)
    const b = new BucketTier(bucket, kv, undefined, tierOptions({ self: B }), log)
    // Accesses on two replicas: 3 oldest, then 1, 5, 2; 4 never read (its upload time, the oldest, stands in).
    const now = Date.now()
    a.touched(digestOf(3), now - 5000)
    b.touched(digestOf(1), now - 4000)
    a.touched(digestOf(5), now - 3000)
    b.touched(digestOf(2), now - 2000)
    await sleep(100)
    const pass = await b.evictOnce()
    t.ok(pass, 'a pass ran')
    t.same(pass?.deleted, [digestOf(4), digestOf(3)], 'the never-read object, then the least recently read one')
    t.equal(pass?.after, 300, 'the bucket is at its bound after the pass')
    t.same([...bucket.live.keys()].sort(), [1, 2, 5].map(digestOf), 'the recently read ones stay')
    const zset = await kv.command(['ZRANGE', 'tier-test:bucket:atime', '0', '-1'])
    t.notOk((zset as string[]).includes(digestOf(3)), 'a deleted object leaves the access times')
    t.same(await a.evictOnce().then((p) => p?.deleted), [], 'a bucket within its bound loses nothing')
  })

  t.test('bucket tier: protected objects stay; one replica at a time', async (t) => {
    const redis = await startRedis({ t })
    const kv = await kvOn(t, redis)
    const old = new Date(Date.now() - 3_600_000)
    const bucket = memoryBucket([1, 2, 3, 4].map((n) => ({ digest: digestOf(n), size: 100, lastModified: old })))
    const leases = new FillLeases(kv, 'tier-test', A, log)
    const lease = await leases.take(digestOf(1))
    const tier = new BucketTier(bucket, kv, leases, tierOptions({ maxSize: 100, protectMs: 60_000 }), log)
    tier.touched(digestOf(2))
    await sleep(100)
    await kv.command(['SET', 'tier-test:bucket:evict', 'someone-else', 'PX', '60000'])
    t.equal(await tier.evictOnce(), undefined, 'no pass while another replica holds the eviction lock')
    await kv.command(['DEL', 'tier-test:bucket:evict'])
    const pass = await tier.evictOnce()
    t.same(pass?.deleted.sort(), [3, 4].map(digestOf), 'only the objects with neither a fill lease nor a recent access go')
    t.equal(pass?.protectedCount, 2, 'the fill in progress and the recent read are protected')
    t.ok(bucket.live.has(digestOf(1)) && bucket.live.has(digestOf(2)))
    if ('held' in lease) await lease.held.release()
  })
}
