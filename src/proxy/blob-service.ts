import type { UpstreamConfig } from '../config/schema.js'
import type { Fill, FillSource } from '../cache/fill/fill.js'
import type { Fills } from '../cache/fills.js'
import type { BlobHandle, Hits } from '../cache/hits.js'
import type { ContentLinks } from '../cache/links.js'
import type { Peers } from '../cluster/peers.js'
import { isPrivate } from '../config/registries.js'
import { RegmirrorError } from '../errors.js'
import { SingleFlight } from '../single-flight.js'
import type { Metrics } from '../metrics.js'
import type { Digest } from '../oci/reference.js'
import { contentLength, upstreamFailure, type UpstreamClient } from '../upstream/client.js'
import { notCachedOffline } from '../upstream/offline.js'
import type { Reporter } from './reporting.js'
import { PeerBlobSource } from './peer-source.js'
import { BucketBlobSource } from './bucket-source.js'
import type { Bucket } from '../storage/bucket.js'
import type { FillLeases } from '../storage/fill-lease.js'
import { planFill } from './fill-plan.js'
import { UpstreamBlobSource } from './upstream-source.js'

export type { BlobHandle } from '../cache/hits.js'

/**
 * Blobs by digest: a disk hit is served from the file; a miss joins the digest's fill, or
 * starts one from the upstream. There is never more than one joinable fill per digest.
 */
export class BlobService {
  /** Which upstream and repository each fill in progress is for (the status page). */
  private readonly subjects = new WeakMap<Fill, { upstream: string; repository: string }>()
  private readonly starting = new SingleFlight<Fill>()

  constructor(
    private readonly hits: Hits,
    private readonly fills: Fills,
    private readonly upstream: UpstreamClient,
    private readonly metrics: Metrics,
    private readonly report: Reporter,
    private readonly links: ContentLinks,
    /** The other replicas, when there are (cluster.peers): a digest another one owns is streamed from it. */
    private readonly peers?: Peers,
    /** The bucket tier (storage.backend: s3): a miss here is looked up there before the upstream is asked. */
    private readonly bucket?: Bucket,
    /** Replicas on one bucket and one Redis: which of them fetches a digest from upstream (fill-plan.ts). */
    private readonly leases?: FillLeases,
  ) {}

  /** Fills in progress (for shutdown and tests). */
  activeFills() {
    return this.fills.active()
  }

  /** The upstream and repository a fill from `get` downloads for (not for imports: they have none). */
  subjectOf(fill: Fill): { upstream: string; repository: string } | undefined {
    return this.subjects.get(fill)
  }

  /** `local`: fetch from upstream here whoever owns the digest (a peer's request, the tools). */
  async get(up: UpstreamConfig, repo: string, d: Digest, opts: { local?: boolean } = {}): Promise<BlobHandle> {
    const hit = await this.hits.open(d)
    if (hit) return hit
    let fill = this.fills.joinable(d)
    if (!fill && this.fills.shared) {
      // Worker processes: another worker may be downloading it (follow it) or have just cached it.
      const other = await this.fills.shared.share(d)
      if (other.handle) this.metrics.fillReadersJoined.inc()
      if (other.handle) return other.handle
      const now = other.cached ? await this.hits.open(d) : undefined
      if (now) return now
      fill = this.fills.joinable(d)
    }
    const joined = fill !== undefined
    if (fill) this.metrics.fillReadersJoined.inc()
    else {
      // From here this worker owns the digest's download among the workers, until it starts or gives up.
      const where = await this.fromBucketOrClaim(up, repo, d, opts.local === true)
      if (where.redirect) return where.redirect
      // One start per digest at a time: deciding where a fill comes from (bucket, lease) takes a few round trips.
      const start = () => this.startOwnFill(up, repo, d, opts.local === true, where.inBucket)
      fill = this.fills.joinable(d) ?? (await this.starting.do(d.value, start).promise)
    }
    // Holds the fill's file (or memory window) for this request even if the download ends before it reads.
    const hold = fill.attach()
    let size: number | undefined
    try {
      size = await fill.ready
    } catch (err) {
      hold.release()
      throw err
    }
    // The fill may have finished while we waited; then the file is simply in the cache.
    if (fill.state === 'done' && fill.kept) {
      const after = await this.hits.open(d)
      if (after) {
        hold.release()
        return after
      }
    }
    return {
      size,
      source: 'fill',
      joined,
      open: (start, end) => {
        const r = hold.open(start, end)
        if (joined) r.on('data', (c: Buffer) => this.metrics.fillJoinedBytes.inc(c.length))
        return r
      },
      release: hold.release,
    }
  }

  /**
   * Makes sure a blob is in the cache, for the tools (preload): nothing is streamed to anyone.
   * `onBytes` hears of each chunk as it is received. Resolves 'cached' when it already was;
   * rejects when it cannot be fetched, or fetched but not kept (no room in the cache).
   */
  async ensure(up: UpstreamConfig, repo: string, d: Digest, onBytes: (n: number) => void = () => {}): Promise<'cached' | 'fetched'> {
    if ((await this.hits.size(d)) !== undefined) return 'cached'
    if (up.offline) throw notCachedOffline(up, 'blob', repo, d.value)
    const joined = this.fills.joinable(d)
    await this.keptBy(joined ?? (await this.startFill(up, repo, d, true)), !joined, onBytes)
    return 'fetched'
  }

  /**
   * Keeps a blob whose bytes come from elsewhere (`regmirror import`: an archive's entry), through
   * the same fill: verified against its digest, admitted under the cap, renamed into the store.
   * With a private upstream configured it is kept marked restricted; the importer says afterwards
   * which upstream and repository hold it (ContentLinks.record).
   */
  async ingest(d: Digest, source: FillSource, onBytes: (n: number) => void = () => {}): Promise<'cached' | 'stored'> {
    if ((await this.hits.size(d)) !== undefined) return 'cached'
    const keep = await this.links.markRestricted(d)
    const fill = this.fills.start(d, source, {}, { keep })
    await this.keptBy(fill, true, onBytes)
    return 'stored'
  }

  /** Waits for a fill nobody reads to be kept; rejects when it fails or has no room in the cache. */
  private async keptBy(fill: Fill, ours: boolean, onBytes: (n: number) => void): Promise<void> {
    const noRoom = () =>
      new RegmirrorError('CACHE_IO', `${fill.digest.value} cannot be kept: the cache has no room for it (cache.maxSize)`, {
        detail: { digest: fill.digest.value, size: fill.size, maxSize: this.fills.maxSize },
      })
    await fill.ready
    // Not admitted, it would be streamed through to readers, and there are none.
    if (!fill.kept) {
      if (ours) fill.cancel()
      await fill.finished.catch(() => {})
      throw noRoom()
    }
    let seen = fill.written
    const progress = () => {
      if (fill.written > seen) onBytes(fill.written - seen)
      seen = fill.written
    }
    fill.on('change', progress)
    try {
      await fill.finished
    } finally {
      fill.off('change', progress)
      progress()
    }
    if (!fill.kept) throw noRoom()
  }

  /** Size of a blob without downloading it: from cache, else a fill in progress, else a HEAD upstream. */
  async head(up: UpstreamConfig, repo: string, d: Digest): Promise<{ size: number; cache: 'hit' | 'miss' }> {
    const cached = await this.hits.size(d)
    if (cached !== undefined) return { size: cached, cache: 'hit' }
    const fill = this.fills.get(d)
    if (fill) {
      const s = await fill.ready
      if (s !== undefined) return { size: s, cache: 'miss' }
    }
    const inBucket = await this.bucketSize(up, d)
    if (inBucket !== undefined) return { size: inBucket, cache: 'miss' }
    if (up.offline) throw notCachedOffline(up, 'blob', repo, d.value)
    const res = await this.upstream.request(up, { method: 'HEAD', path: `/v2/${repo}/blobs/${d.value}`, repo, byDigest: 'small' })
    await res.body.dump().catch(() => {})
    if (res.status !== 200) throw await upstreamFailure(up, res, 'BLOB_UNKNOWN')
    const len = contentLength(res)
    if (len === undefined)
      throw new RegmirrorError('UPSTREAM_ERROR', `${up.name} did not give the blob's size`, { detail: { upstream: up.name } })
    return { size: len, cache: 'miss' }
  }

  /**
   * A redirect to the bucket's object, for a client (not a peer, not the tools) in redirect mode, when no fill of
   * it runs here; the claim on the download among the workers is given back then, and on any error.
   */
  private async fromBucketOrClaim(
    up: UpstreamConfig,
    repo: string,
    d: Digest,
    local: boolean,
  ): Promise<{ redirect?: BlobHandle; inBucket: boolean }> {
    try {
      const inBucket = await this.bucketSize(up, d)
      if (inBucket === undefined && up.offline) throw notCachedOffline(up, 'blob', repo, d.value)
      const found = { inBucket: inBucket !== undefined }
      if (inBucket === undefined || !this.bucket?.redirects || local || this.fills.joinable(d)) return found
      const url = await this.bucket.presign(d)
      if (url === undefined) return found
      this.fills.shared?.abandon(d)
      this.metrics.storageServed.inc({ how: 'redirect' })
      const redirect: BlobHandle = { size: inBucket, source: 'fill', joined: false, redirect: url, open: () => noBody(), release: () => {} }
      return { redirect, inBucket: true }
    } catch (err) {
      this.fills.shared?.abandon(d)
      throw err
    }
  }

  /** startFill, giving back the claim the other workers wait on when it cannot start. */
  private async startOwnFill(up: UpstreamConfig, repo: string, d: Digest, local: boolean, fromBucket: boolean): Promise<Fill> {
    try {
      return await this.startFill(up, repo, d, local, fromBucket)
    } catch (err) {
      this.fills.shared?.abandon(d)
      throw err
    }
  }

  /**
   * The blob's size in the bucket tier, if it holds it. A private upstream's requests never use the bucket: its
   * content is not uploaded, and what the bucket holds was not confirmed for it (access/visibility.ts).
   */
  private async bucketSize(up: UpstreamConfig, d: Digest): Promise<number | undefined> {
    return this.bucket && !isPrivate(up) ? this.bucket.lookup(d) : undefined
  }

  /** `fromBucket`: the bucket holds it; read from there (the upstream takes over if the bucket fails), no upload. */
  private async startFill(up: UpstreamConfig, repo: string, d: Digest, local: boolean, fromBucket = false) {
    const at = { upstream: up.name, digest: d.value }
    const fromUpstream = new UpstreamBlobSource(this.upstream, up, repo, d)
    const priv = isPrivate(up)
    const plan = await planFill(d, { local, inBucket: fromBucket, priv }, this.peers, this.bucket, this.leases)
    if (plan.from === 'bucket') this.metrics.storageServed.inc({ how: 'fill' })
    // A private upstream's blob is marked before it can be kept; if the mark fails it is not kept.
    const keep = (plan.from !== 'peer' || plan.keep) && (!priv || (await this.links.markRestricted(d)))
    this.metrics.fillsStarted.inc()
    const fill = this.fills.start(
      d,
      plan.from === 'bucket'
        ? new BucketBlobSource(this.bucket as Bucket, d, fromUpstream)
        : plan.from === 'peer'
          ? new PeerBlobSource(this.peers as Peers, plan.peer, up, repo, d, fromUpstream, this.metrics)
          : fromUpstream,
      {
        onResume: (offset, attempt, err) => {
          this.metrics.fillResumes.inc()
          this.report.log.warn(
            { ...at, offset, attempt, err: err instanceof Error ? err.message : String(err) },
            'upstream blob download broke off; resuming with Range',
          )
        },
        onWriteError: (err, offset) =>
          this.report.writeError(
            err,
            { ...at, offset },
            'cannot write to the cache; streaming the blob straight from upstream without caching it',
          ),
        onFailed: (err) => this.report.fillFailed(up.name, err, { repository: repo, digest: d.value }),
      },
      // Who may see it is on disk before its readers get their last byte.
      { keep, onKept: () => this.links.record(up.name, repo, d, priv) },
    )
    this.subjects.set(fill, { upstream: up.name, repository: repo })
    if (plan.from !== 'upstream') return fill
    // Fetched from upstream here: a copy goes to the bucket, completed only once the fill verified it; the fill
    // lease (if any) is held until then, so the other replicas stream from here and then read the object.
    const uploaded = this.bucket && !priv ? this.uploadFrom(fill, this.bucket) : Promise.resolve()
    if (plan.lease) void Promise.allSettled([uploaded, fill.finished]).then(() => plan.lease?.release())
    return fill
  }

  /** The upload reads the fill like a client: its last byte comes only after the digest verified, or it fails. */
  private async uploadFrom(fill: Fill, bucket: Bucket): Promise<void> {
    if (!bucket.up) return
    const hold = fill.attach()
    let size: number | undefined
    try {
      size = await fill.ready
    } catch {
      hold.release()
      return
    }
    const reader = hold.open(0, size === undefined ? Number.MAX_SAFE_INTEGER - 1 : size - 1)
    hold.release()
    await bucket.keep(fill.digest, reader)
  }
}

function noBody(): never {
  throw new RegmirrorError('INTERNAL', 'a redirect has no body')
}
