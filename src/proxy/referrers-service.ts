import { mkdir, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { LRUCache } from 'lru-cache'
import { writeFileAtomic } from '../cache/blob-store.js'
import type { Layout } from '../cache/layout.js'
import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError, isRegmirrorError, isUpstreamFailure } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { checkManifest } from '../oci/manifest.js'
import { MAX_MANIFEST_SIZE, OCI_INDEX } from '../oci/media-types.js'
import { isValidDigest, type Digest } from '../oci/reference.js'
import { header, upstreamFailure, type UpstreamClient } from '../upstream/client.js'
import type { Reporter } from './reporting.js'
import type { TagService } from './tag-service.js'

/** A referrer as the referrers API lists it. */
export interface Referrer {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
}

export interface ReferrersAnswer {
  /** Only those of the artifactType asked for, when one was. */
  manifests: Referrer[]
  cache: 'hit' | 'miss' | 'stale'
}

/** Lists kept in memory: by count and by bytes (each list is at most a manifest's size). */
const KEPT_LISTS = 5000
const KEPT_BYTES = 32 * 1024 * 1024
/** An artifactType worth passing on: a media type (`type/subtype`, RFC 6838 characters). */
const MEDIA_TYPE_RE = /^[A-Za-z0-9][\w!#$&.^+-]{0,126}\/[A-Za-z0-9][\w!#$&.^+-]{0,126}$/

/**
 * The OCI referrers API (`GET /v2/<name>/referrers/<digest>[?artifactType=…]`): the signatures,
 * SBOMs and attestations whose manifests name `digest` as their subject. A list is asked of the
 * upstream and then answered from memory for `referrers.cacheTtl` (a list grows when someone signs
 * an image, so not for long); an `artifactType` filter is passed on, and applied here to whatever
 * the upstream did not filter. An upstream without the API (CNCF distribution 2.8, a 404) is read
 * through the spec's fallback, the index tagged `sha256-<hex>`. The last whole list is kept on disk
 * per repository and served, filtered here, when the upstream fails or the mirror is offline;
 * `regmirror import` adds to it the referrers an archive carries. The referrer manifests
 * themselves are ordinary content.
 */
export class ReferrersService {
  private readonly kept = new LRUCache<string, { manifests: Referrer[]; at: number; size: number }>({
    max: KEPT_LISTS,
    maxSize: KEPT_BYTES,
    sizeCalculation: (k) => k.size,
  })

  constructor(
    private readonly layout: Layout,
    private readonly upstream: UpstreamClient,
    private readonly tags: TagService,
    private readonly report: Reporter,
    private readonly metrics: Metrics,
    private readonly ttlMs: number,
  ) {}

  async list(up: UpstreamConfig, repo: string, subject: Digest, artifactType?: string): Promise<ReferrersAnswer> {
    const only = (list: Referrer[]) => (artifactType === undefined ? list : list.filter((m) => m.artifactType === artifactType))
    const key = `${up.name}\n${repo}\n${subject.value}\n${artifactType ?? ''}`
    const kept = this.kept.get(key)
    if (kept && Date.now() - kept.at < this.ttlMs) {
      this.metrics.listings.inc({ kind: 'referrers', source: 'cache' })
      return { manifests: kept.manifests, cache: 'hit' }
    }
    const stored = await this.stored(up, repo, subject)
    if (up.offline) return { manifests: only(stored ?? []), cache: 'hit' }
    try {
      const fresh = await this.fetch(up, repo, subject, artifactType)
      // A list the upstream filtered is not the whole list: only the memory keeps it, under its filter.
      if (!fresh.filtered) {
        await this.keep(up, repo, subject, fresh.manifests)
        this.remember(`${up.name}\n${repo}\n${subject.value}\n`, fresh.manifests)
      }
      const manifests = only(fresh.manifests)
      this.remember(key, manifests)
      this.metrics.listings.inc({ kind: 'referrers', source: 'upstream' })
      return { manifests, cache: 'miss' }
    } catch (err) {
      if (stored === undefined || !isUpstreamFailure(err)) throw err
      this.report.log.warn({ upstream: up.name, repository: repo, subject: subject.value }, 'upstream failed; serving the stored referrers')
      this.metrics.listings.inc({ kind: 'referrers', source: 'stale' })
      return { manifests: only(stored), cache: 'stale' }
    }
  }

  private remember(key: string, manifests: Referrer[]): void {
    if (this.ttlMs > 0) this.kept.set(key, { manifests, at: Date.now(), size: 256 + JSON.stringify(manifests).length })
  }

  /** What is stored for `subject`, without asking anyone (export). */
  async cached(up: UpstreamConfig, repo: string, subject: Digest): Promise<Referrer[]> {
    return (await this.stored(up, repo, subject)) ?? []
  }

  /** Adds referrers to what is stored for `subject` (import), keeping what was there. */
  async add(up: UpstreamConfig, repo: string, subject: Digest, more: Referrer[]): Promise<void> {
    const now = (await this.stored(up, repo, subject)) ?? []
    const known = new Set(now.map((r) => r.digest))
    await this.keep(up, repo, subject, [...now, ...more.filter((r) => !known.has(r.digest))])
  }

  private async fetch(
    up: UpstreamConfig,
    repo: string,
    subject: Digest,
    artifactType?: string,
  ): Promise<{ manifests: Referrer[]; filtered: boolean }> {
    const pass = artifactType !== undefined && MEDIA_TYPE_RE.test(artifactType)
    const res = await this.upstream.request(up, {
      method: 'GET',
      path: `/v2/${repo}/referrers/${subject.value}${pass ? `?artifactType=${encodeURIComponent(artifactType)}` : ''}`,
      repo,
      headers: { accept: OCI_INDEX },
    })
    if (res.status === 404) {
      await res.body.dump().catch(() => {})
      return { manifests: await this.fallback(up, repo, subject), filtered: false }
    }
    if (res.status !== 200) throw await upstreamFailure(up, res, 'MANIFEST_UNKNOWN')
    const tooLarge = () =>
      new RegmirrorError('MANIFEST_TOO_LARGE', `referrers list from ${up.name} is too large`, { detail: { upstream: up.name } })
    const body = await this.upstream.readSmall(up, res, MAX_MANIFEST_SIZE, tooLarge)
    const applied = (header(res.headers, 'oci-filters-applied') ?? '').split(',').map((f) => f.trim())
    try {
      return { manifests: referrersOf(body), filtered: pass && applied.includes('artifactType') }
    } catch (err) {
      throw new RegmirrorError(
        'UPSTREAM_MANIFEST_INVALID',
        `${up.name} answered a referrers list that is not one: ${(err as Error).message}`,
        {
          detail: { upstream: up.name },
        },
      )
    }
  }

  /** The referrers tag schema: the index tagged `sha256-<hex>`; none when there is no such tag. */
  private async fallback(up: UpstreamConfig, repo: string, subject: Digest): Promise<Referrer[]> {
    try {
      const { manifest } = await this.tags.resolve(up, repo, `sha256-${subject.hex}`)
      return referrersOf(manifest.body)
    } catch (err) {
      if (isRegmirrorError(err, 'MANIFEST_UNKNOWN')) return []
      throw err
    }
  }

  private async stored(up: UpstreamConfig, repo: string, subject: Digest): Promise<Referrer[] | undefined> {
    try {
      return referrersOf(await readFile(this.layout.referrersFile(up.name, repo, subject)))
    } catch {
      return undefined
    }
  }

  private async keep(up: UpstreamConfig, repo: string, subject: Digest, list: Referrer[]): Promise<void> {
    const path = this.layout.referrersFile(up.name, repo, subject)
    try {
      await mkdir(dirname(path), { recursive: true })
      await writeFileAtomic(path, referrersIndex(list))
    } catch (err) {
      this.report.log.warn({ upstream: up.name, repository: repo, err: (err as Error).message }, 'cannot store the referrers list')
    }
  }
}

/** The referrers API's answer: an image index of the referrers' descriptors. */
export function referrersIndex(list: Referrer[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: list }))
}

/** The descriptors of an index body, kept only when well-formed (an upstream's list is checked before it is kept). */
function referrersOf(body: Buffer): Referrer[] {
  const check = checkManifest(body, OCI_INDEX)
  if (!check.ok || check.mediaType !== OCI_INDEX) throw new Error(`not a referrers index: ${check.ok ? check.mediaType : check.reason}`)
  const manifests = (check.doc as { manifests: Referrer[] }).manifests
  return manifests
    .filter((m) => isValidDigest(m.digest))
    .map((m) => ({
      mediaType: m.mediaType,
      digest: m.digest,
      size: m.size,
      ...(typeof m.artifactType === 'string' ? { artifactType: m.artifactType } : {}),
      ...(m.annotations && typeof m.annotations === 'object' ? { annotations: m.annotations } : {}),
    }))
}
