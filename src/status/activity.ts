import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, indexEntries } from '../oci/media-types.js'

/** One image pull as the status page lists it. */
export interface Pull {
  upstream: string
  /** As the upstream knows it (Docker Hub's `library/` applied). */
  repository: string
  /** The tag asked for, when it was asked for by tag. */
  tag?: string
  /** What the tag pointed at: an image, or an index whose child then gives the size. */
  digest: string
  /** Config and layers of the image pulled (for an index, of the child that was fetched); unknown until then. */
  size?: number
  /** `os/architecture[/variant]` of the child pulled from an index. */
  platform?: string
  /** Milliseconds since the epoch. */
  at: number
}

export interface RepositoryPulls {
  upstream: string
  repository: string
  pulls: number
  lastAt: number
}

interface Entry extends Pull {
  /** Child manifest digest → platform, for an index. */
  children?: Map<string, string>
}

const RECENT = 25
const MAX_REPOSITORIES = 1000
// The requests of one pull (containerd: HEAD the tag, GET the index, GET the child) come within
// moments; the same image asked for again later is another pull.
const SAME_PULL_MS = 30_000

/**
 * What was pulled lately and which repositories are pulled most, in memory and bounded: the last
 * RECENT pulls, and counts for at most MAX_REPOSITORIES repositories (when full, a new one takes
 * the place of the least pulled). Fed by every manifest answered to a client; since the start of
 * the process.
 */
export class PullActivity {
  private recent: Entry[] = []
  /** Child digest of a recent index → that pull. */
  private readonly children = new Map<string, Entry>()
  private readonly repositories = new Map<string, RepositoryPulls>()

  constructor(private readonly now: () => number = Date.now) {}

  /** A manifest was answered: a new pull, or a step of one in progress (its index's child, the GET after a HEAD). */
  manifestServed(
    upstream: string,
    repository: string,
    tag: string | undefined,
    m: { digest: string; mediaType: string; body: Buffer },
  ): void {
    const now = this.now()
    const parent = this.children.get(m.digest)
    if (tag === undefined && parent && sameRepo(parent, upstream, repository) && now - parent.at < SAME_PULL_MS) {
      parent.size = imageSize(m.mediaType, m.body) ?? parent.size
      parent.platform = parent.children?.get(m.digest) || parent.platform
      return
    }
    const same = this.recent.find((e) => sameRepo(e, upstream, repository) && e.digest === m.digest && now - e.at < SAME_PULL_MS)
    if (same && (tag === undefined || same.tag === undefined || same.tag === tag)) {
      same.tag ??= tag
      return
    }
    const entry: Entry = { upstream, repository, tag, digest: m.digest, size: imageSize(m.mediaType, m.body), at: now }
    if (m.mediaType === OCI_INDEX || m.mediaType === DOCKER_LIST) {
      entry.children = new Map(indexEntries(m.body).map((c) => [c.digest, platformOf(c.platform)]))
      for (const child of entry.children.keys()) this.children.set(child, entry)
    }
    this.remember(entry)
    this.count(upstream, repository, now)
  }

  /** Newest first. */
  recentPulls(): Pull[] {
    return this.recent.map(({ children: _children, ...pull }) => ({ ...pull }))
  }

  /** Most pulled first (ties: most recently pulled first). */
  topRepositories(limit: number): RepositoryPulls[] {
    return [...this.repositories.values()]
      .sort((a, b) => b.pulls - a.pulls || b.lastAt - a.lastAt)
      .slice(0, limit)
      .map((r) => ({ ...r }))
  }

  private remember(entry: Entry): void {
    this.recent.unshift(entry)
    for (const gone of this.recent.splice(RECENT)) {
      for (const child of gone.children?.keys() ?? []) if (this.children.get(child) === gone) this.children.delete(child)
    }
  }

  private count(upstream: string, repository: string, at: number): void {
    const key = `${upstream}/${repository}`
    const known = this.repositories.get(key)
    if (known) {
      known.pulls++
      known.lastAt = at
      return
    }
    if (this.repositories.size >= MAX_REPOSITORIES) this.dropLeastPulled()
    this.repositories.set(key, { upstream, repository, pulls: 1, lastAt: at })
  }

  private dropLeastPulled(): void {
    let least: [string, RepositoryPulls] | undefined
    for (const e of this.repositories) {
      if (!least || e[1].pulls < least[1].pulls || (e[1].pulls === least[1].pulls && e[1].lastAt < least[1].lastAt)) least = e
    }
    if (least) this.repositories.delete(least[0])
  }
}

function sameRepo(p: Pull, upstream: string, repository: string): boolean {
  return p.upstream === upstream && p.repository === repository
}

/** Bytes of an image's config and layers, as its manifest declares them; undefined for anything else. */
export function imageSize(mediaType: string, body: Buffer): number | undefined {
  if (mediaType !== OCI_MANIFEST && mediaType !== DOCKER_MANIFEST) return undefined
  try {
    const doc = JSON.parse(body.toString('utf8')) as { config?: { size?: unknown }; layers?: { size?: unknown }[] }
    const sizes = [doc.config, ...(doc.layers ?? [])].map((d) => d?.size)
    return sizes.every((s): s is number => typeof s === 'number' && Number.isSafeInteger(s) && s >= 0)
      ? sizes.reduce((a, b) => a + b, 0)
      : undefined
  } catch {
    return undefined
  }
}

function platformOf(p: { os?: string; architecture?: string; variant?: string } | undefined): string {
  if (!p || typeof p.os !== 'string' || typeof p.architecture !== 'string') return ''
  return [p.os, p.architecture, typeof p.variant === 'string' ? p.variant : undefined].filter(Boolean).join('/').slice(0, 100)
}
