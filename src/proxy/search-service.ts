import { LRUCache } from 'lru-cache'
import type { Registries } from '../config/registries.js'
import { repoAllowed, type Config, type UpstreamConfig } from '../config/schema.js'
import { RegmirrorError, isRegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { isValidName } from '../oci/reference.js'
import { SingleFlight } from '../single-flight.js'
import { upstreamFailure, type UpstreamClient } from '../upstream/client.js'
import type { CatalogService, Visible } from './catalog-service.js'

/** One result of Docker's v1 search API, the fields `docker search` reads. */
export interface SearchResult {
  name: string
  description: string
  star_count: number
  is_official: boolean
  is_automated: boolean
}

/** The v1 search answer (`registry.SearchResults` in moby). */
export interface SearchResults {
  num_pages: number
  num_results: number
  page: number
  page_size: number
  query: string
  results: SearchResult[]
}

export interface SearchAnswer {
  results: SearchResults
  /** upstream: asked now; cache: the upstream's answer from memory; local: the repositories this mirror holds. */
  source: 'upstream' | 'cache' | 'local'
}

/** The description of a result that comes from this mirror's cache rather than from the search index. */
export const LOCAL_DESCRIPTION = 'cached in this mirror'

/** Docker Hub's pages are a few KiB; a MiB is far beyond any real one. */
const MAX_SEARCH_BODY = 1024 * 1024
const MAX_TERM = 255
/** moby's range for `--limit`. */
const MAX_PAGE_SIZE = 100
const DEFAULT_PAGE_SIZE = 25
const CACHE_ENTRIES = 1000
const CACHE_BYTES = 16 * 1024 * 1024

interface Kept {
  results: SearchResults
  at: number
  size: number
}

/**
 * `docker search MIRROR/term`: the daemon asks `/v1/search?q=term&n=25` of the mirror. The
 * question goes to the search index (`search.upstream`, Docker Hub's by default) through the
 * upstream client like every other upstream request, and its answer is kept in memory for
 * `search.cacheTtl`. When the index cannot be reached or answers something unusable (or the
 * mirror is offline), the answer is the repositories this mirror holds whose names contain the
 * term, each described as LOCAL_DESCRIPTION: on a network where Docker Hub is blocked that is
 * what can be pulled. A client is never shown a repository its access rules do not let it pull.
 */
export class SearchService {
  /** The index as an upstream: its own health, metrics label and address policy for redirects. */
  private readonly index: UpstreamConfig
  private readonly kept = new LRUCache<string, Kept>({ max: CACHE_ENTRIES, maxSize: CACHE_BYTES, sizeCalculation: (k) => k.size })
  private readonly flights = new SingleFlight<SearchResults>()

  constructor(
    private readonly config: Config,
    private readonly registries: Registries,
    private readonly upstream: UpstreamClient,
    private readonly catalog: CatalogService,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    const url = config.search.upstream
    this.index = {
      // Not a valid upstream name (two colons), so it can never share health or labels with a configured one.
      name: `search:${new URL(url).host}`,
      url,
      hosts: [],
      libraryPrefix: false,
      // The index is the default upstream's (Docker Hub's): offline with it (`offline.enabled` included).
      offline: registries.defaultUpstream.offline,
      tagTtl: config.search.cacheTtl,
      tagTtlRules: [],
      // The index is not a registry: no manifests to remember or serve stale, no pull quota, and none of the
      // registry's limits (search answers are small and kept for search.cacheTtl).
      negativeTtl: 0,
      serveStaleOn: [],
      quotaReserve: 0,
      quotaMaxStale: 0,
      maxConcurrent: 0,
      maxRequestsPerSecond: 0,
      maxMbps: 0,
      maxQueueWait: 0,
      allow: [],
      deny: [],
      realms: [],
      allowedNetworks: [],
    }
  }

  async search(query: { q: string | null; n: string | null; page: string | null }, visible: Visible): Promise<SearchAnswer> {
    const q = searchTerm(query.q)
    const n = Math.max(1, Math.min(MAX_PAGE_SIZE, number(query.n, DEFAULT_PAGE_SIZE)))
    const page = Math.max(1, Math.min(100_000, number(query.page, 1)))
    const answer = await this.fromIndex(q, n, page)
    if (answer) return { ...answer, results: this.onlyVisible(answer.results, visible) }
    this.metrics.listings.inc({ kind: 'search', source: 'local' })
    return { results: await this.local(q, n, page, visible), source: 'local' }
  }

  /** The index's answer (kept or asked now), or undefined when it has none to give. */
  private async fromIndex(
    q: string,
    n: number,
    page: number,
  ): Promise<(Omit<SearchAnswer, 'source'> & { source: 'upstream' | 'cache' }) | undefined> {
    if (this.index.offline) return undefined
    const key = `${q}\n${n}\n${page}`
    const kept = this.kept.get(key)
    if (kept && Date.now() - kept.at < this.config.search.cacheTtl) {
      this.metrics.listings.inc({ kind: 'search', source: 'cache' })
      return { results: kept.results, source: 'cache' }
    }
    try {
      const results = await this.flights.do(key, () => this.ask(q, n, page)).promise
      this.metrics.listings.inc({ kind: 'search', source: 'upstream' })
      return { results, source: 'upstream' }
    } catch (err) {
      if (!isRegmirrorError(err)) throw err
      this.log.warn({ upstream: this.index.name, code: err.code, err: err.message }, 'search index failed; answering from the cache')
      return undefined
    }
  }

  private async ask(q: string, n: number, page: number): Promise<SearchResults> {
    const qs = new URLSearchParams({ q, n: String(n), page: String(page) })
    const res = await this.upstream.request(this.index, { method: 'GET', path: `/v1/search?${qs.toString()}` })
    if (res.status !== 200) throw await upstreamFailure(this.index, res, 'NAME_UNKNOWN')
    const tooLarge = () => new RegmirrorError('UPSTREAM_ERROR', `search answer from ${this.index.name} is too large`)
    const body = await this.upstream.readSmall(this.index, res, MAX_SEARCH_BODY, tooLarge)
    const results = searchResults(body, { q, n, page })
    if (this.config.search.cacheTtl > 0) this.kept.set(`${q}\n${n}\n${page}`, { results, at: Date.now(), size: body.length + 256 })
    return results
  }

  /**
   * The index's results name repositories of the default upstream (the daemon pulls them through
   * `registry-mirrors`): those the client may not pull through this mirror are left out.
   */
  private onlyVisible(r: SearchResults, visible: Visible): SearchResults {
    const up = this.registries.defaultUpstream
    const shown = r.results.filter((x) => {
      const repo = this.registries.normalizeRepo(up, x.name)
      return repoAllowed(up, repo) && visible(up, repo)
    })
    if (shown.length === r.results.length) return r
    return { ...r, results: shown, num_results: Math.max(shown.length, r.num_results - (r.results.length - shown.length)) }
  }

  /** The repositories this mirror holds whose names contain the term, one page of them. */
  private async local(q: string, n: number, page: number, visible: Visible): Promise<SearchResults> {
    const term = q.toLowerCase()
    const def = this.registries.defaultUpstream
    const matches: SearchResult[] = []
    for (const r of await this.catalog.repositories(visible)) {
      // Docker Hub names its official images without `library/`, and so does `docker search`.
      const official = r.up === def && r.up.libraryPrefix && r.repo.startsWith('library/')
      const name = official ? r.repo.slice('library/'.length) : r.name
      if (!name.includes(term) && !r.name.includes(term)) continue
      matches.push({ name, description: LOCAL_DESCRIPTION, star_count: 0, is_official: official, is_automated: false })
    }
    return {
      num_pages: Math.ceil(matches.length / n),
      num_results: matches.length,
      page,
      page_size: n,
      query: q,
      results: matches.slice((page - 1) * n, page * n),
    }
  }
}

function searchTerm(q: string | null): string {
  const term = (q ?? '').trim()
  // eslint-disable-next-line no-control-regex
  if (term.length > MAX_TERM || /[\u0000-\u001f\u007f]/.test(term)) {
    throw new RegmirrorError('QUERY_INVALID', `the search term must be at most ${MAX_TERM} printable characters`)
  }
  return term
}

function number(v: string | null, dflt: number): number {
  if (v === null || v === '') return dflt
  if (!/^\d{1,20}$/.test(v)) {
    throw new RegmirrorError('PAGINATION_NUMBER_INVALID', 'n and page must be numbers', { detail: { value: v.slice(0, 20) } })
  }
  return Number(v)
}

/** The index's answer, checked and reduced to the fields `docker search` reads: nothing else is passed on. */
function searchResults(body: Buffer, asked: { q: string; n: number; page: number }): SearchResults {
  let doc: unknown
  try {
    doc = JSON.parse(body.toString('utf8'))
  } catch {
    doc = undefined
  }
  const o = doc as Partial<Record<keyof SearchResults, unknown>> | undefined
  if (typeof o !== 'object' || o === null || !Array.isArray(o.results)) {
    throw new RegmirrorError('UPSTREAM_ERROR', 'the search index answered something that is not a search result')
  }
  const results: SearchResult[] = []
  for (const r of o.results.slice(0, MAX_PAGE_SIZE) as Partial<Record<keyof SearchResult, unknown>>[]) {
    if (typeof r !== 'object' || r === null || typeof r.name !== 'string' || !isValidName(r.name)) continue
    results.push({
      name: r.name,
      description: typeof r.description === 'string' ? r.description.slice(0, 1000) : '',
      star_count: count(r.star_count),
      is_official: r.is_official === true,
      is_automated: r.is_automated === true,
    })
  }
  return {
    num_pages: count(o.num_pages),
    num_results: Math.max(count(o.num_results), results.length),
    page: count(o.page) || asked.page,
    page_size: count(o.page_size) || asked.n,
    query: asked.q,
    results,
  }
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0
}
