import { LRUCache } from 'lru-cache'
import { ttlFor, type UpstreamConfig } from '../config/schema.js'
import type { ContentLinks } from '../cache/links.js'
import type { MetadataStore, TagRecord } from '../cache/metadata-store.js'
import { isPrivate } from '../config/registries.js'
import { RegmirrorError, isRegmirrorError, isUpstreamFailure, isWriteError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { MANIFEST_ACCEPT } from '../oci/media-types.js'
import { isValidDigest, parseDigest, type Digest } from '../oci/reference.js'
import { SingleFlight } from '../single-flight.js'
import { header, upstreamFailure, type UpstreamClient } from '../upstream/client.js'
import type { Manifest, ManifestService } from './manifest-service.js'
import { isUpstreamNotFound, type NegativeCache } from './negative-cache.js'
import { notCachedOffline } from '../upstream/offline.js'
import type { Pins } from './pins.js'
import type { Reporter } from './reporting.js'

export type TagCacheResult = 'hit' | 'miss' | 'stale'

export interface TagResolution {
  manifest: Manifest
  cache: TagCacheResult
}

/**
 * Tags are the only mutable thing a mirror serves. Within its TTL a tag is answered from
 * cache with no upstream request; after it, one HEAD revalidates it (HEADs do not count
 * against Docker Hub's pull quota, but a tag that moved costs a pull). When the upstream fails,
 * or answers a status listed in `serveStaleOn`, the last known digest is served (stale-if-error).
 * While the upstream's pull quota is below `quotaReserve`, a cached tag up to `quotaMaxStale` old
 * is served without asking, so the quota left goes to what the cache does not hold. A 404 for a
 * tag nobody has is remembered for `negativeTtl` (negative-cache.ts). Concurrent requests for one
 * tag share one resolution.
 */
export class TagService {
  private readonly flights = new SingleFlight<TagResolution>()
  /** Tags already logged as served unrevalidated for the quota: one line per tag an hour, not one per pull. */
  private readonly quotaLogged = new LRUCache<string, true>({ max: 10_000, ttl: 3600_000 })

  constructor(
    private readonly metadata: MetadataStore,
    private readonly manifests: ManifestService,
    private readonly upstream: UpstreamClient,
    private readonly metrics: Metrics,
    private readonly report: Reporter,
    private readonly links: ContentLinks,
    private readonly negative: NegativeCache,
    private readonly pins?: Pins,
  ) {}

  async resolve(up: UpstreamConfig, repo: string, tag: string): Promise<TagResolution> {
    const fresh = await this.fresh(up, repo, tag)
    if (fresh.hit) return fresh.hit
    // The record is read again inside the flight: a request whose first read raced another
    // request's completed refresh finds the fresh record instead of asking upstream again.
    return this.flights.do(`${up.name}/${repo}:${tag}`, async () => {
      const again = await this.fresh(up, repo, tag)
      return again.hit ?? this.refresh(up, repo, tag, again.rec)
    }).promise
  }

  private async fresh(up: UpstreamConfig, repo: string, tag: string): Promise<{ rec: TagRecord | undefined; hit?: TagResolution }> {
    const rec = await this.metadata.getTag(up.name, repo, tag)
    // Offline, the cached resolution is the answer whatever its age: there is nothing to ask.
    if (rec && (up.offline || Date.now() - rec.checkedAt < ttlFor(up, repo, tag))) {
      const d = parseDigest(rec.digest)
      const m = await this.manifests.cached(d)
      if (m) return { rec, hit: { manifest: m, cache: 'hit' } }
      // Fresh resolution from a shared store (another replica made it) but no local copy:
      // the digest is enough, fetched immutably without re-asking what the tag means. The
      // disk link makes the tag this replica just served survive a Redis outage or a restart.
      const { manifest } = await this.manifests.get(up, repo, d)
      await this.metadata.linkTag(up.name, repo, tag, rec)
      return { rec, hit: { manifest, cache: 'miss' } }
    }
    return { rec }
  }

  private async refresh(up: UpstreamConfig, repo: string, tag: string, rec: TagRecord | undefined): Promise<TagResolution> {
    if (up.offline) throw notCachedOffline(up, 'manifest', repo, tag)
    const cached = rec ? await this.manifests.cached(parseDigest(rec.digest)) : undefined
    if (rec && cached && this.savesQuota(up, repo, tag, rec)) return { manifest: cached, cache: 'stale' }
    if (!(rec && cached)) {
      const known = this.negative.check(up, repo, tag)
      if (known) throw known
    }
    try {
      if (rec && cached) {
        const res = await this.upstream.request(up, {
          method: 'HEAD',
          path: `/v2/${repo}/manifests/${tag}`,
          repo,
          headers: { accept: MANIFEST_ACCEPT },
        })
        await res.body.dump().catch(() => {})
        if (res.status === 200) {
          const digest = header(res.headers, 'docker-content-digest')
          if (digest === rec.digest) {
            await this.metadata.setTag(up.name, repo, tag, { ...rec, checkedAt: Date.now() })
            return { manifest: cached, cache: 'hit' }
          }
          if (digest !== undefined) {
            const { manifest } = await this.manifests.get(up, repo, upstreamDigest(up, digest))
            await this.record(up, repo, tag, manifest)
            return { manifest, cache: 'miss' }
          }
          // No digest in the HEAD answer: fall through to a GET by tag.
        } else if (res.status !== 404 && res.status !== 405) {
          throw await upstreamFailure(up, res, 'MANIFEST_UNKNOWN')
        } else if (res.status === 404) {
          // The tag is gone upstream: forget it rather than serve a deleted tag forever, unless the
          // operator asked for exactly that (serveStaleOn: [404]).
          if (!up.serveStaleOn.includes(404)) await this.metadata.deleteTag(up.name, repo, tag)
          throw await upstreamFailure(up, res, 'MANIFEST_UNKNOWN')
        }
      }
      const manifest = await this.manifests.fetch(up, repo, tag)
      await this.record(up, repo, tag, manifest)
      return { manifest, cache: 'miss' }
    } catch (err) {
      if (rec && cached && (isUpstreamFailure(err) || servesStaleOn(up, err))) {
        this.metrics.staleServed.inc({ upstream: up.name })
        this.report.log.warn(
          { upstream: up.name, repository: repo, tag, code: isRegmirrorError(err) ? err.code : undefined },
          'upstream failed; serving the cached tag (stale-if-error)',
        )
        return { manifest: cached, cache: 'stale' }
      }
      if (isUpstreamNotFound(err)) this.negative.remember(up, repo, tag)
      throw err
    }
  }

  /**
   * Whether to serve the cached tag without revalidating it, to keep the upstream's pull quota for misses:
   * only while the quota is below `quotaReserve`, and only a tag the upstream confirmed within `quotaMaxStale`.
   */
  private savesQuota(up: UpstreamConfig, repo: string, tag: string, rec: TagRecord): boolean {
    if (!this.upstream.quotaLow(up) || Date.now() - rec.checkedAt > up.quotaMaxStale) return false
    this.metrics.revalidationsSkipped.inc({ upstream: up.name })
    const key = `${up.name}/${repo}:${tag}`
    if (!this.quotaLogged.has(key)) {
      this.quotaLogged.set(key, true)
      this.report.log.info(
        { upstream: up.name, repository: repo, tag, checkedAt: new Date(rec.checkedAt).toISOString() },
        'pull quota below quotaReserve; serving the cached tag without revalidating it',
      )
    }
    return true
  }

  private async record(up: UpstreamConfig, repo: string, tag: string, m: Manifest): Promise<void> {
    try {
      await this.metadata.setTag(up.name, repo, tag, {
        digest: m.digest,
        mediaType: m.mediaType,
        size: m.body.length,
        checkedAt: Date.now(),
      })
    } catch (err) {
      if (!isWriteError(err)) throw err
      // The answer is right; only remembering it failed (full or read-only disk).
      this.report.writeError(err, { upstream: up.name, repository: repo, tag }, 'cannot write the tag link to the cache')
    }
    this.negative.forget(up.name, repo, tag)
    await this.links.record(up.name, repo, parseDigest(m.digest), isPrivate(up))
    await this.pins?.onTag(up.name, repo, tag, m.digest)
  }
}

/** Whether the upstream's answer is one `serveStaleOn` lists (401, 403, 404): then a cached copy is served. */
function servesStaleOn(up: UpstreamConfig, err: unknown): boolean {
  if (up.serveStaleOn.length === 0 || !isRegmirrorError(err)) return false
  const given = (err.detail as { status?: unknown } | undefined)?.status
  // A token the realm would not give (the repository went private) is a 401 of the upstream too.
  const status = typeof given === 'number' ? given : err.code === 'UNAUTHORIZED' ? 401 : undefined
  return status !== undefined && (up.serveStaleOn as readonly number[]).includes(status)
}

/** A digest an upstream gave in a header: one that is not a sha256 digest is the upstream's fault, not the client's. */
function upstreamDigest(up: UpstreamConfig, value: string): Digest {
  if (!isValidDigest(value)) {
    throw new RegmirrorError('UPSTREAM_ERROR', `${up.name} answered a malformed Docker-Content-Digest`, {
      detail: { upstream: up.name, digest: value.slice(0, 100) },
    })
  }
  return parseDigest(value)
}
