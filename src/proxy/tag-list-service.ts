import { LRUCache } from 'lru-cache'
import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError, isUpstreamFailure } from '../errors.js'
import type { MetadataStore } from '../cache/metadata-store.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { SingleFlight } from '../single-flight.js'
import { header, upstreamFailure, type UpstreamClient } from '../upstream/client.js'

const MAX_TAGS_BODY = 16 * 1024 * 1024
/** Pages kept in memory: by count, and by bytes (a page is at most MAX_TAGS_BODY). */
const KEPT_PAGES = 5000
const KEPT_BYTES = 64 * 1024 * 1024

export interface TagListPage {
  body: Buffer
  /** The upstream's next-page query (`?n=…&last=…`) and the rest of its Link header, if it gave one. */
  next?: { search: string; rel: string }
  /** hit: kept within the upstream's tagTtl; miss: asked now; stale: the upstream failed, the last good page. */
  cache: 'hit' | 'miss' | 'stale'
}

type Page = Omit<TagListPage, 'cache'>

/**
 * Tag lists: each page (upstream, repository, `n`, `last`) is asked of the upstream and kept in
 * memory for the upstream's `tagTtl`, like a tag; the upstream's pagination is kept as it gave
 * it. When the upstream fails (5xx, timeout, marked offline) the last good page is served
 * however old; without one, the tags this mirror holds links for. Offline by configuration, the
 * list is those tags: what it can serve.
 */
export class TagListService {
  private readonly kept = new LRUCache<string, { page: Page; at: number }>({
    max: KEPT_PAGES,
    maxSize: KEPT_BYTES,
    sizeCalculation: (k) => k.page.body.length + 256,
  })
  private readonly flights = new SingleFlight<Page>()

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly metadata: MetadataStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  async list(up: UpstreamConfig, repo: string, page: { n: string | null; last: string | null }): Promise<TagListPage> {
    const q = new URLSearchParams()
    if (page.n !== null) {
      if (!/^\d{1,6}$/.test(page.n)) {
        throw new RegmirrorError('PAGINATION_NUMBER_INVALID', 'n must be a number of results', { detail: { n: page.n.slice(0, 20) } })
      }
      q.set('n', page.n)
    }
    const n = page.n === null ? undefined : Number(page.n)
    if (up.offline) return { ...(await this.cachedList(up, repo, n, page.last ?? undefined)), cache: 'hit' }
    if (page.last !== null) q.set('last', page.last.slice(0, 256))
    const qs = q.toString()
    const key = `${up.name}\n${repo}\n${qs}`
    const kept = this.kept.get(key)
    if (kept && Date.now() - kept.at < up.tagTtl) {
      this.metrics.listings.inc({ kind: 'tags', source: 'cache' })
      return { ...kept.page, cache: 'hit' }
    }
    try {
      const fresh = await this.flights.do(key, () => this.fetch(up, repo, qs, key)).promise
      this.metrics.listings.inc({ kind: 'tags', source: 'upstream' })
      return { ...fresh, cache: 'miss' }
    } catch (err) {
      if (!isUpstreamFailure(err)) throw err
      const stale = kept?.page ?? (await this.cachedList(up, repo, n, page.last ?? undefined).catch(() => undefined))
      if (!stale) throw err
      this.metrics.listings.inc({ kind: 'tags', source: 'stale' })
      this.log.warn({ upstream: up.name, repository: repo, code: err.code }, 'upstream failed; serving the last tag list')
      return { ...stale, cache: 'stale' }
    }
  }

  private async fetch(up: UpstreamConfig, repo: string, qs: string, key: string): Promise<Page> {
    const res = await this.upstream.request(up, { method: 'GET', path: `/v2/${repo}/tags/list${qs ? `?${qs}` : ''}`, repo })
    if (res.status !== 200) throw await upstreamFailure(up, res, 'NAME_UNKNOWN')
    const body = await this.upstream.readSmall(up, res, MAX_TAGS_BODY, () => new RegmirrorError('UPSTREAM_ERROR', 'tag list too large'))
    const m = /<([^>]*)>(.*)/.exec(header(res.headers, 'link') ?? '')
    const page: Page = m ? { body, next: { search: new URL(m[1] as string, 'http://x').search, rel: m[2] ?? '' } } : { body }
    // Kept even with a tagTtl of 0: never fresh, but the page to serve when the upstream fails.
    this.kept.set(key, { page, at: Date.now() })
    return page
  }

  private async cachedList(up: UpstreamConfig, repo: string, n: number | undefined, last: string | undefined): Promise<Page> {
    const all = await this.metadata.listTags(up.name, repo)
    if (all.length === 0) {
      throw new RegmirrorError('NAME_UNKNOWN', `the mirror is offline for ${up.name} and holds no tags of ${repo}`, {
        detail: { upstream: up.name, repository: repo, offline: true },
      })
    }
    const after = last === undefined ? all : all.filter((t) => t > last)
    const tags = n === undefined ? after : after.slice(0, n)
    const body = Buffer.from(JSON.stringify({ name: repo, tags }))
    if (n === undefined || after.length <= n || tags.length === 0) return { body }
    return { body, next: { search: `?n=${n}&last=${encodeURIComponent(tags[tags.length - 1]!)}`, rel: '; rel="next"' } }
  }
}
