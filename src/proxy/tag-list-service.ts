import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { MetadataStore } from '../cache/metadata-store.js'
import { header, upstreamFailure, type UpstreamClient } from '../upstream/client.js'

const MAX_TAGS_BODY = 16 * 1024 * 1024

export interface TagListPage {
  body: Buffer
  /** The upstream's next-page query (`?n=…&last=…`) and the rest of its Link header, if it gave one. */
  next?: { search: string; rel: string }
}

/**
 * Tag lists: passed through to the upstream (with `n` and `last`), bounded; they are not cached.
 * Offline, the list is the tags this mirror holds links for: what it can serve.
 */
export class TagListService {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly metadata: MetadataStore,
  ) {}

  async list(up: UpstreamConfig, repo: string, page: { n: string | null; last: string | null }): Promise<TagListPage> {
    const q = new URLSearchParams()
    if (page.n !== null) {
      if (!/^\d{1,6}$/.test(page.n)) {
        throw new RegmirrorError('PAGINATION_NUMBER_INVALID', 'n must be a number of results', { detail: { n: page.n.slice(0, 20) } })
      }
      q.set('n', page.n)
    }
    if (up.offline) return this.cachedList(up, repo, page.n === null ? undefined : Number(page.n), page.last ?? undefined)
    if (page.last !== null) q.set('last', page.last.slice(0, 256))
    const qs = q.toString()
    const res = await this.upstream.request(up, { method: 'GET', path: `/v2/${repo}/tags/list${qs ? `?${qs}` : ''}`, repo })
    if (res.status !== 200) throw await upstreamFailure(up, res, 'NAME_UNKNOWN')
    const body = await this.upstream.readSmall(up, res, MAX_TAGS_BODY, () => new RegmirrorError('UPSTREAM_ERROR', 'tag list too large'))
    const m = /<([^>]*)>(.*)/.exec(header(res.headers, 'link') ?? '')
    if (!m) return { body }
    return { body, next: { search: new URL(m[1] as string, 'http://x').search, rel: m[2] ?? '' } }
  }

  private async cachedList(up: UpstreamConfig, repo: string, n: number | undefined, last: string | undefined): Promise<TagListPage> {
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
