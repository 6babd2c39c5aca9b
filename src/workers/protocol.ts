/**
 * The messages between the primary and its workers (docs/architecture.md, "Workers"), over rpc.ts.
 * Requests a worker makes of the primary are PrimaryApi; one-way events are named in the comments.
 *
 * worker → primary events: index.touch, index.release, index.forget, index.acquire, index.releaseUse,
 *   index.pins (this worker's pinned digests), fill.started / fill.running / fill.progress / fill.done /
 *   fill.failed (a download this worker owns), fill.leave (a follower is done), ready (listening).
 * primary → worker events: index.changes (entries added or removed, the totals), fill.progress,
 *   fill.done, fill.failed (a download another worker owns, for its followers here), kv.changed (a
 *   record another worker wrote or deleted, '' for all: drop the local copy).
 */

export interface IndexStats {
  bytes: number
  count: number
  pinnedBytes: number
}

export interface IndexSnapshot {
  entries: [string, number][]
  stats: IndexStats
}

/** The primary's answer to a worker that misses a blob. */
export type Claim =
  /** It is in the cache now: open it as a hit. */
  | { role: 'cached' }
  /** Download it here, and report the fill (fill.* events). */
  | { role: 'owner' }
  /**
   * Another worker downloads it to `path`: read that file as it grows (`written` bytes so far), last
   * byte only after fill.done. The primary holds the digest in use for this worker until it sends
   * index.releaseUse.
   */
  | { role: 'follow'; path: string; size: number; written: number }
  /** Another worker downloads it without a file to follow (not kept): download it here, unreported. */
  | { role: 'alone' }
  /** The other worker's download failed before any byte could be followed. */
  | { role: 'failed'; code: string; message: string }

export type FillReport =
  | { event: 'started'; digest: string; path: string }
  | { event: 'running'; digest: string; size: number | undefined; followable: boolean }
  | { event: 'progress'; digest: string; written: number }
  | { event: 'done'; digest: string; size: number }
  | { event: 'failed'; digest: string; code: string; message: string }

export type PrimaryApi = {
  'index.snapshot': () => IndexSnapshot
  'index.reserve': (size: number) => boolean
  'index.add': (digest: string, size: number, reservedSize: number) => void
  'index.adopt': (digest: string) => number | undefined
  'index.hold': (digest: string) => number | undefined
  'fills.claim': (digest: string) => Claim
  /** Whether any worker downloads this digest now (private-content checks). */
  'fills.active': (digest: string) => boolean
  'kv.get': (key: string) => unknown
  'kv.set': (key: string, value: unknown, ttlMs?: number) => boolean
  'kv.delete': (key: string) => boolean
  'kv.clear': () => void
  /** The Prometheus exposition of every process together. */
  metrics: () => string
}

export type WorkerApi = {
  /** This worker's metrics, for the primary to aggregate (prom-client's getMetricsAsJSON). */
  'metrics.json': () => unknown[]
}

export interface ReadyReport {
  plain: { address: string; port: number; family: string }
  tls?: { address: string; port: number; family: string }
}
