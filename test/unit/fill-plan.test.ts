/**
 * Where a new fill's bytes come from (proxy/fill-plan.ts), every branch: the bucket when it holds the blob; the fill
 * lease with a bucket and Redis (holder fetches from upstream, others stream from the holder and keep it, the bucket
 * looked at again after the lease was taken); rendezvous without a lease, for private upstreams and while the bucket
 * is set aside; upstream here for peers' requests and when Redis fails. Small stand-ins for Peers, Bucket and
 * FillLeases: the decision is what is tested (the parts themselves run against real servers in test/e2e).
 */
import t from 'tap'
import type { Peers } from '../../src/cluster/peers.js'
import { parseDigest } from '../../src/oci/reference.js'
import { planFill } from '../../src/proxy/fill-plan.js'
import type { Bucket } from '../../src/storage/bucket.js'
import type { FillLeases, LeaseAnswer } from '../../src/storage/fill-lease.js'

const d = parseDigest(`sha256:${'a'.repeat(64)}`)
const SELF = 'http://10.0.0.1:5000'
const OTHER = 'http://10.0.0.2:5000'
const OWNER = 'http://10.0.0.3:5000'

const peers = { self: SELF, ownerOf: () => OWNER } as unknown as Peers

function bucketWith(opts: { up?: boolean; holdsAfterLease?: boolean } = {}) {
  return { up: opts.up ?? true, lookup: async () => (opts.holdsAfterLease ? 10 : undefined) } as unknown as Bucket
}

function leasesAnswering(answer: 'held' | 'unavailable' | string) {
  const calls = { take: 0, released: 0 }
  const leases = {
    take: async (): Promise<LeaseAnswer> => {
      calls.take++
      if (answer === 'held') return { held: { release: async () => void calls.released++ } } as unknown as LeaseAnswer
      if (answer === 'unavailable') return { unavailable: true }
      return { holder: answer }
    },
  } as unknown as FillLeases
  return { leases, calls }
}

const plain = { local: false, inBucket: false, priv: false }

t.test('the bucket holds it: read from the bucket, no lease asked', async (t) => {
  const { leases, calls } = leasesAnswering('held')
  t.same(await planFill(d, { ...plain, inBucket: true }, peers, bucketWith(), leases), { from: 'bucket' })
  t.equal(calls.take, 0)
})

t.test('fill lease taken: fetch from upstream holding it', async (t) => {
  const { leases } = leasesAnswering('held')
  const plan = await planFill(d, plain, peers, bucketWith(), leases)
  t.equal(plan.from, 'upstream')
  t.ok(plan.from === 'upstream' && plan.lease, 'the lease goes with the plan, to be released after the upload')
})

t.test('fill lease taken, but the last holder committed meanwhile: lease given back, read the bucket', async (t) => {
  const { leases, calls } = leasesAnswering('held')
  t.same(await planFill(d, plain, peers, bucketWith({ holdsAfterLease: true }), leases), { from: 'bucket' })
  t.equal(calls.released, 1, 'the lease is released at once')
})

t.test('another replica holds the lease: stream from it, keep it on this hot tier, rendezvous not asked', async (t) => {
  const { leases } = leasesAnswering(OTHER)
  t.same(await planFill(d, plain, peers, bucketWith(), leases), { from: 'peer', peer: OTHER, keep: true })
})

t.test('this replica holds it (a second start raced): fetch here rather than ask itself', async (t) => {
  const { leases } = leasesAnswering(SELF)
  t.same(await planFill(d, plain, peers, bucketWith(), leases), { from: 'upstream' })
})

t.test('Redis failed: fetch here (each replica on its own)', async (t) => {
  const { leases } = leasesAnswering('unavailable')
  t.same(await planFill(d, plain, peers, bucketWith(), leases), { from: 'upstream' })
})

t.test("a peer's request fills here, whoever holds or owns the digest", async (t) => {
  const { leases, calls } = leasesAnswering(OTHER)
  t.same(await planFill(d, { ...plain, local: true }, peers, bucketWith(), leases), { from: 'upstream' })
  t.equal(calls.take, 0)
})

t.test('without a lease (filesystem, no Redis), for private upstreams, and while the bucket is set aside: rendezvous', async (t) => {
  const owner = { from: 'peer', peer: OWNER, keep: false }
  t.same(await planFill(d, plain, peers, undefined, undefined), owner, 'no bucket, no lease')
  const { leases, calls } = leasesAnswering('held')
  t.same(await planFill(d, { ...plain, priv: true }, peers, bucketWith(), leases), owner, 'private upstream')
  t.same(await planFill(d, plain, peers, bucketWith({ up: false }), leases), owner, 'bucket set aside')
  t.equal(calls.take, 0, 'no lease taken in any of them')
  t.same(await planFill(d, plain, undefined, undefined, undefined), { from: 'upstream' }, 'a replica on its own')
})
