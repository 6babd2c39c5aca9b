import type { Peers } from '../cluster/peers.js'
import type { Digest } from '../oci/reference.js'
import type { Bucket } from '../storage/bucket.js'
import type { FillLeases, Lease } from '../storage/fill-lease.js'

/**
 * Where a new fill's bytes come from, decided before it starts:
 * - `bucket`: the bucket holds the blob (read it from there; no upload);
 * - `peer`: another replica fills it (rendezvous owner, or fill-lease holder): stream from it, upload nothing;
 * - `upstream`: fetch it here, and (unless private or bucket-less) upload it; `lease` is held until the upload ends.
 */
export type FillPlan = { from: 'bucket' } | { from: 'peer'; peer: string; keep: boolean } | { from: 'upstream'; lease?: Lease }

/**
 * With a bucket and a fill lease (storage.backend s3, Redis, peers), the lease decides who fetches from upstream:
 * any replica may fill any digest since the bucket, not a replica's disk, is the shared copy (docs/configuration.md,
 * "Replicas on one bucket"). Otherwise the rendezvous owner does, as before. `local` (a peer's request, the tools)
 * and private upstreams fill here; a Redis failure also fills here (each replica on its own, the bucket gets the same
 * verified object twice at worst).
 */
export async function planFill(
  d: Digest,
  opts: { local: boolean; inBucket: boolean; priv: boolean },
  peers: Peers | undefined,
  bucket: Bucket | undefined,
  leases: FillLeases | undefined,
): Promise<FillPlan> {
  if (opts.inBucket) return { from: 'bucket' }
  if (opts.local) return { from: 'upstream' }
  if (leases === undefined || bucket === undefined || opts.priv || !bucket.up) {
    const owner = peers?.ownerOf(d.value)
    // Another replica's digest is streamed from it and not kept here: each replica's disk holds its own share.
    return owner === undefined ? { from: 'upstream' } : { from: 'peer', peer: owner, keep: false }
  }
  const answer = await leases.take(d.value)
  if ('held' in answer) {
    // The last holder may have committed between our look in the bucket and taking the lease.
    if ((await bucket.lookup(d)) === undefined) return { from: 'upstream', lease: answer.held }
    await answer.held.release()
    return { from: 'bucket' }
  }
  // The holder's stream is verified here again and kept on this replica's hot tier; the bucket gets the holder's copy.
  if ('holder' in answer && peers !== undefined && answer.holder !== peers.self) return { from: 'peer', peer: answer.holder, keep: true }
  return { from: 'upstream' }
}
