import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { LRUCache } from 'lru-cache'
import type { UpstreamConfig } from '../config/schema.js'
import type { BlobStore } from '../cache/blob-store.js'
import type { CacheIndex } from '../cache/lru-index.js'
import type { ContentLinks } from '../cache/links.js'
import type { MetadataStore } from '../cache/metadata-store.js'
import { isPrivate } from '../config/registries.js'
import { RegmirrorError, isWriteError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { checkManifest } from '../oci/manifest.js'
import { MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, pickForAccept } from '../oci/media-types.js'
import { parseDigest, type Digest } from '../oci/reference.js'
import { SingleFlight } from '../single-flight.js'
import { header, upstreamFailure, type UpstreamClient, type UpstreamResponse } from '../upstream/client.js'
import { notCachedOffline } from '../upstream/offline.js'
import type { Bucket } from '../storage/bucket.js'
import { isUpstreamNotFound, type NegativeCache } from './negative-cache.js'
import type { Pins } from './pins.js'
import type { Reporter } from './reporting.js'

export interface Manifest {
  digest: string
  mediaType: string
  body: Buffer
}

/**
 * Manifests by digest: content-addressed and immutable, so a cached copy is always right.
 * Bodies are verified against their digest before they are stored, kept on disk in the blob
 * store (so eviction and pins treat them like any content) and in a small memory cache
 * because tag requests read them constantly.
 */
export class ManifestService {
  private readonly memory = new LRUCache<string, Manifest>({
    maxSize: 32 * 1024 * 1024,
    sizeCalculation: (m) => m.body.length + 200,
  })
  private readonly flights = new SingleFlight<Manifest>()

  constructor(
    private readonly store: BlobStore,
    private readonly index: CacheIndex,
    private readonly metadata: MetadataStore,
    private readonly upstream: UpstreamClient,
    private readonly metrics: Metrics,
    private readonly report: Reporter,
    private readonly links: ContentLinks,
    private readonly negative: NegativeCache,
    private readonly pins?: Pins,
    /** The bucket tier (storage.backend: s3): manifests are kept there too, so a replica with an empty disk needs no upstream. */
    private readonly bucket?: Bucket,
  ) {}

  /**
   * The cached manifest, or undefined. What is on disk under a digest is served as a manifest
   * only if it is one: at most MAX_MANIFEST_SIZE (a layer is never read into memory for this),
   * still hashing to its digest, and with a manifest's media type and structure.
   */
  async cached(d: Digest): Promise<Manifest | undefined> {
    const mem = this.memory.get(d.value)
    if (mem && this.index.has(d.value)) {
      this.index.touch(d.value)
      return mem
    }
    const size = await this.index.adopt(d.value)
    if (size === undefined || size > MAX_MANIFEST_SIZE) return undefined
    let body: Buffer | undefined
    try {
      body = await this.store.readSmall(d, MAX_MANIFEST_SIZE)
    } catch {
      this.index.forget(d.value)
      return undefined
    }
    if (body === undefined) return undefined
    if (createHash('sha256').update(body).digest('hex') !== d.hex) {
      // Changed on disk since it was verified: never served; removed so it is fetched again.
      this.report.log.error({ digest: d.value }, 'cached manifest does not match its digest; removed from the cache')
      this.index.forget(d.value)
      await this.store.remove(d).catch(() => {})
      return undefined
    }
    const info = await this.metadata.getManifestInfo(d)
    const check = checkManifest(body, info?.mediaType)
    if (!check.ok) return undefined
    const m = { digest: d.value, mediaType: check.mediaType, body }
    this.memory.set(d.value, m)
    this.index.touch(d.value)
    return m
  }

  /** A manifest by digest: from cache, else fetched once from upstream however many ask. */
  async get(up: UpstreamConfig, repo: string, d: Digest): Promise<{ manifest: Manifest; cache: 'hit' | 'miss' }> {
    const hit = await this.cached(d)
    if (hit) return { manifest: hit, cache: 'hit' }
    const known = this.negative.check(up, repo, d.value)
    if (known) throw known
    // Re-checked inside the flight: a request that missed just before another's fetch stored
    // the manifest must not fetch it a second time.
    const { promise } = this.flights.do(
      d.value,
      async () => (await this.cached(d)) ?? (await this.fromBucket(up, repo, d)) ?? this.fetch(up, repo, d.value, d),
    )
    try {
      return { manifest: await promise, cache: 'miss' }
    } catch (err) {
      if (isUpstreamNotFound(err)) this.negative.remember(up, repo, d.value)
      throw err
    }
  }

  /**
   * Fetches a manifest from upstream by tag or digest and stores it. When `expected` is given
   * (a digest request) the body must hash to it; for a tag the upstream's
   * Docker-Content-Digest, when present, must match the body.
   */
  async fetch(up: UpstreamConfig, repo: string, ref: string, expected?: Digest): Promise<Manifest> {
    if (up.offline) throw notCachedOffline(up, 'manifest', repo, ref)
    try {
      return await this.fetchOnce(up, repo, ref, expected)
    } catch (err) {
      const digest = expected?.value ?? (ref.includes(':') ? ref : undefined)
      this.report.refused(up.name, 'manifest', err, { repository: repo, reference: ref, digest })
      throw err
    }
  }

  /**
   * What a client whose Accept header does not include the manifest's type gets instead
   * (oci/media-types.ts, pickForAccept): the linux/amd64 manifest of a Docker manifest list, or
   * MANIFEST_UNKNOWN.
   */
  async forAccept(m: Manifest, accept: string[], up: UpstreamConfig, repo: string): Promise<Manifest> {
    const pick = pickForAccept(m.mediaType, m.body, accept)
    if (pick === 'this') return m
    if (pick !== undefined) return (await this.get(up, repo, parseDigest(pick))).manifest
    throw new RegmirrorError('MANIFEST_UNKNOWN', `manifest is ${m.mediaType}, which the Accept header does not allow`, {
      detail: { mediaType: m.mediaType },
    })
  }

  /**
   * The manifest from the bucket tier, checked as one from upstream is (size, digest, a manifest's structure) and
   * kept on disk; undefined when the bucket has none or fails (the upstream is asked then). A private upstream's
   * requests never read the bucket (its content is never put there).
   */
  private async fromBucket(up: UpstreamConfig, repo: string, d: Digest): Promise<Manifest | undefined> {
    if (!this.bucket || isPrivate(up)) return undefined
    const size = await this.bucket.lookup(d)
    if (size === undefined || size > MAX_MANIFEST_SIZE) return undefined
    try {
      const { body: stream } = await this.bucket.read(d, 0)
      const chunks: Buffer[] = []
      let n = 0
      for await (const c of stream) {
        n += (c as Buffer).length
        if (n > MAX_MANIFEST_SIZE) {
          stream.destroy()
          return undefined
        }
        chunks.push(c as Buffer)
      }
      const body = Buffer.concat(chunks)
      if (createHash('sha256').update(body).digest('hex') !== d.hex) {
        this.report.log.error({ digest: d.value }, 'manifest in object storage does not match its digest; asking the upstream')
        return undefined
      }
      const check = checkManifest(body)
      if (!check.ok) return undefined
      return await this.keepLocally(up, repo, d, { digest: d.value, mediaType: check.mediaType, body }, false)
    } catch (err) {
      this.report.log.warn(
        { digest: d.value, err: (err as Error).message },
        'cannot read a manifest from object storage; asking the upstream',
      )
      return undefined
    }
  }

  private async fetchOnce(up: UpstreamConfig, repo: string, ref: string, expected?: Digest): Promise<Manifest> {
    const res = await this.upstream.request(up, {
      method: 'GET',
      path: `/v2/${repo}/manifests/${ref}`,
      repo,
      headers: { accept: MANIFEST_ACCEPT },
      // By digest, the body is checked below whoever sends it; a tag's meaning comes in trust order.
      ...(expected !== undefined ? { byDigest: 'small' as const } : {}),
    })
    if (res.status !== 200) throw await upstreamFailure(up, res, 'MANIFEST_UNKNOWN')
    const body = await readLimitedWith(this.upstream, res, MAX_MANIFEST_SIZE, up)
    const hex = createHash('sha256').update(body).digest('hex')
    const digest = `sha256:${hex}`
    const claimed = header(res.headers, 'docker-content-digest')
    const want = expected?.value ?? (claimed?.startsWith('sha256:') ? claimed : undefined)
    if (want !== undefined && want !== digest) {
      this.metrics.digestMismatches.inc({ kind: 'manifest' })
      this.report.log.warn({ upstream: up.name, repository: repo, digest: want, actual: digest }, 'manifest digest mismatch; refused')
      throw new RegmirrorError('DIGEST_MISMATCH', 'manifest from upstream does not match its digest', {
        detail: { upstream: up.name, digest: want },
      })
    }
    const check = checkManifest(body, header(res.headers, 'content-type'))
    if (!check.ok) {
      throw new RegmirrorError('UPSTREAM_MANIFEST_INVALID', `${up.name} answered something that is not a manifest: ${check.reason}`, {
        detail: { upstream: up.name, reason: check.reason },
      })
    }
    const d = parseDigest(digest)
    const m: Manifest = { digest, mediaType: check.mediaType, body }
    const priv = isPrivate(up)
    // Verified above; a private upstream's content never goes to the shared bucket.
    if (this.bucket && !priv) void this.bucket.keep(d, Readable.from([body]))
    return this.keepLocally(up, repo, d, m, priv)
  }

  /** Stores a verified manifest on disk and in memory, and records where it was seen. */
  private async keepLocally(up: UpstreamConfig, repo: string, d: Digest, m: Manifest, priv: boolean): Promise<Manifest> {
    const { digest, mediaType, body } = m
    // A private upstream's manifest is marked before it is kept; if the mark fails it is not kept.
    if (priv && !(await this.links.markRestricted(d))) return m
    try {
      await this.store.writeVerified(d, body)
      await this.metadata.setManifestInfo(d, { mediaType, size: body.length })
    } catch (err) {
      if (!isWriteError(err)) throw err
      // A full or read-only disk must not stop pulls: the client gets the verified manifest.
      this.report.writeError(err, { upstream: up.name, digest }, 'cannot write to the cache; serving the manifest without caching it')
      return m
    }
    await this.index.add(digest, body.length)
    this.negative.forget(up.name, repo, digest)
    await this.links.record(up.name, repo, d, priv)
    this.pins?.onManifest(digest, body)
    this.memory.set(digest, m)
    return m
  }
}

async function readLimitedWith(upstream: UpstreamClient, res: UpstreamResponse, limit: number, up: UpstreamConfig): Promise<Buffer> {
  const tooLarge = () =>
    new RegmirrorError('MANIFEST_TOO_LARGE', `manifest from ${up.name} is larger than ${limit} bytes`, { detail: { upstream: up.name } })
  const declared = Number(header(res.headers, 'content-length') ?? NaN)
  if (declared > limit) {
    res.body.destroy()
    throw tooLarge()
  }
  const body = await upstream.readSmall(up, res, limit, tooLarge)
  if (Number.isFinite(declared) && declared !== body.length) {
    throw new RegmirrorError('SIZE_MISMATCH', `manifest from ${up.name} is not the size announced`, { detail: { upstream: up.name } })
  }
  return body
}
