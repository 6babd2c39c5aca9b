import { LRUCache } from 'lru-cache'
import type { CacheIndex, IndexChange } from '../cache/lru-index.js'
import type { IndexSnapshot, IndexStats, PrimaryApi } from './protocol.js'
import type { Rpc } from './rpc.js'

const LINGER_MS = 1000

interface Held {
  readers: number
  size: number
  timer?: NodeJS.Timeout
}

/**
 * A worker's view of the primary's LruIndex (docs/architecture.md, "Workers"). The primary owns the
 * index: everything that changes it (reservations, commits, adoption, in-use holds, pins, access
 * times) is sent there, and eviction happens only there. What the worker reads synchronously
 * (`has`, `sizeOf`, the totals) comes from a copy of the entries that the primary keeps up to date
 * with its changes; it lags the primary by one message at most, which is harmless for those readers:
 * `has` decides only whether a private-content check or a memory copy is looked at, and a hit is
 * opened through `hold`, which asks the primary.
 */
export class RemoteIndex implements CacheIndex {
  private readonly entries = new Map<string, number>()
  /**
   * Holds this worker has with the primary, by digest: kept LINGER_MS after the last reader, so a
   * blob or manifest read again and again costs one round trip, not one per request. The primary
   * still knows of every hold (eviction skips it); a lingering one only delays that blob's eviction.
   */
  private readonly held = new Map<string, Held>()
  /** When index.touch was last sent, per digest. */
  private readonly touched = new LRUCache<string, number>({ max: 10_000 })
  private stats: IndexStats = { bytes: 0, count: 0, pinnedBytes: 0 }
  private pinned = new Set<string>()

  constructor(
    private readonly rpc: Rpc<PrimaryApi>,
    readonly maxSize: number,
  ) {
    rpc.on('index.changes', (data) => this.apply(data as { changes: IndexChange[]; stats: IndexStats }))
  }

  /** Waits for the primary's index to be loaded (readiness) and takes a copy of its entries. */
  async load(): Promise<void> {
    const snap: IndexSnapshot = await this.rpc.call('index.snapshot', [], { timeoutMs: 0 })
    for (const [d, size] of snap.entries) this.entries.set(d, size)
    this.stats = snap.stats
  }

  get size(): number {
    return this.stats.bytes
  }

  get count(): number {
    return this.stats.count
  }

  has(digest: string): boolean {
    return this.entries.has(digest)
  }

  sizeOf(digest: string): number | undefined {
    return this.entries.get(digest)
  }

  /** Pinned by this worker (the primary pins the union of all). */
  isPinned(digest: string): boolean {
    return this.pinned.has(digest)
  }

  /** The entries this worker knows of, in the order it learnt them (the LRU order is the primary's). */
  order(): string[] {
    return [...this.entries.keys()]
  }

  pinnedBytes(): number {
    return this.stats.pinnedBytes
  }

  /** Sent at most once per LINGER_MS per digest (a cached manifest is touched on every tag request): the primary's recency needs no finer grain. */
  touch(digest: string): void {
    if (!this.entries.has(digest)) return
    const now = Date.now()
    if (now - (this.touched.get(digest) ?? 0) < LINGER_MS) return
    this.touched.set(digest, now)
    this.rpc.notify('index.touch', digest)
  }

  /** Access times are written by the primary; it flushes them. */
  async flush(): Promise<void> {}

  reserve(size: number): Promise<boolean> {
    return this.rpc.call('index.reserve', [size])
  }

  release(size: number): void {
    if (size > 0) this.rpc.notify('index.release', size)
  }

  async add(digest: string, size: number, reservedSize = 0): Promise<void> {
    await this.rpc.call('index.add', [digest, size, reservedSize])
    this.entries.set(digest, size)
  }

  async adopt(digest: string): Promise<number | undefined> {
    const size = await this.rpc.call('index.adopt', [digest])
    if (size !== undefined) this.entries.set(digest, size)
    return size
  }

  async hold(digest: string): Promise<number | undefined> {
    if (this.reuse(digest)) return (this.held.get(digest) as Held).size
    const size = await this.rpc.call('index.hold', [digest])
    if (size === undefined) return undefined
    this.entries.set(digest, size)
    // Another request took a hold while this one waited: one primary hold is enough.
    if (this.reuse(digest)) {
      this.rpc.notify('index.releaseUse', digest)
      return (this.held.get(digest) as Held).size
    }
    this.held.set(digest, { readers: 1, size })
    return size
  }

  forget(digest: string): void {
    this.entries.delete(digest)
    const h = this.held.get(digest)
    if (h && h.readers === 0) this.letGo(digest, h)
    this.rpc.notify('index.forget', digest)
  }

  acquire(digest: string): void {
    if (this.reuse(digest)) return
    this.held.set(digest, { readers: 1, size: this.entries.get(digest) ?? 0 })
    this.rpc.notify('index.acquire', digest)
  }

  releaseUse(digest: string): void {
    const h = this.held.get(digest)
    if (!h) return
    h.readers -= 1
    if (h.readers > 0) return
    h.timer = setTimeout(() => this.letGo(digest, h), LINGER_MS)
    h.timer.unref()
  }

  /** A hold this worker has already (in use or lingering) taken for one more reader. */
  private reuse(digest: string): boolean {
    const h = this.held.get(digest)
    if (!h) return false
    h.readers += 1
    clearTimeout(h.timer)
    h.timer = undefined
    return true
  }

  private letGo(digest: string, h: Held): void {
    clearTimeout(h.timer)
    if (this.held.get(digest) !== h) return
    this.held.delete(digest)
    this.rpc.notify('index.releaseUse', digest)
  }

  /** This worker's pins; the primary pins the union of every worker's (and its own). */
  setPinned(digests: Set<string>): void {
    this.pinned = digests
    this.rpc.notify('index.pins', [...this.pinned])
  }

  private apply(m: { changes: IndexChange[]; stats: IndexStats }): void {
    for (const c of m.changes) {
      if ('removed' in c) this.entries.delete(c.digest)
      else this.entries.set(c.digest, c.size)
    }
    this.stats = m.stats
  }
}
