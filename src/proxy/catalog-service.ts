import type { MetadataStore } from '../cache/metadata-store.js'
import type { Registries } from '../config/registries.js'
import { repoAllowed, type UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'

/** A repository the cache holds tags of, and the name clients see it by. */
export interface CachedRepository {
  up: UpstreamConfig
  repo: string
  /** The default upstream's repositories as they are (`library/alpine`), the others with their registry (`ghcr.io/owner/app`). */
  name: string
}

/** Who may see a repository (the access rules of the client asking). */
export type Visible = (up: UpstreamConfig, repo: string) => boolean

export interface CatalogPage {
  repositories: string[]
  /** The query of the next page, when there may be one. */
  next?: { n: number; last: string }
}

/** The largest page; a client asking for more gets this many and a Link to the rest, as the distribution spec allows. */
export const MAX_CATALOG_PAGE = 1000

/**
 * `/v2/_catalog`: the repositories this mirror holds tag links for (what it can serve, offline
 * too), across upstreams, named the way a client pulls them through the mirror. Read from the
 * data directory on each request, so an image pulled a moment ago is listed. Repositories of
 * upstreams no longer configured, or that an upstream's allow/deny no longer admits, are not
 * listed; neither is anything the client's access rules do not let it pull.
 */
export class CatalogService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly registries: Registries,
  ) {}

  /** Sorted by name. `only`: the repositories of one upstream, unprefixed (a request with `?ns=` or a mapped Host). */
  async repositories(visible: Visible, only?: UpstreamConfig): Promise<CachedRepository[]> {
    const out: CachedRepository[] = []
    for (const { upstream, repo } of await this.metadata.repositories()) {
      const up = this.registries.byName(upstream)
      // The directory is named after the upstream's name; a registry host that also finds it is not that name.
      if (!up || up.name !== upstream || (only && up !== only)) continue
      if (!repoAllowed(up, repo) || !visible(up, repo)) continue
      const name = only || up === this.registries.defaultUpstream ? repo : `${up.name}/${repo}`
      out.push({ up, repo, name })
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /** One page: names after `last`, at most `n` (distribution's `n`/`last`). */
  async page(visible: Visible, query: { n: string | null; last: string | null }, only?: UpstreamConfig): Promise<CatalogPage> {
    const n = pageSize(query.n)
    const last = query.last ?? ''
    if (last.length > 1024) throw new RegmirrorError('QUERY_INVALID', 'last is longer than any repository name')
    if (n === 0) return { repositories: [] }
    const after = (await this.repositories(visible, only)).map((r) => r.name).filter((name) => name > last)
    const repositories = after.slice(0, n)
    if (after.length <= n) return { repositories }
    return { repositories, next: { n, last: repositories[repositories.length - 1]! } }
  }
}

/** `n` as distribution reads it: digits only, else PAGINATION_NUMBER_INVALID; absent or above the maximum: the maximum. */
export function pageSize(n: string | null, max = MAX_CATALOG_PAGE): number {
  if (n === null || n === '') return max
  if (!/^\d{1,20}$/.test(n)) {
    throw new RegmirrorError('PAGINATION_NUMBER_INVALID', 'n must be a number of results', { detail: { n: n.slice(0, 20) } })
  }
  return Math.min(Number(n), max)
}
