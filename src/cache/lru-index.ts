import { LRUCache } from 'lru-cache'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { parseDigest } from '../oci/reference.js'
import type { BlobStore } from './blob-store.js'

interface Entry {
  size: number
  lastTouch: number
}

/** What the rest of the program uses of the index: LruIndex in one process, a worker's view of the primary's (src/workers/). */
export type CacheIndex = Omit<LruIndex, 'beforeRemove' | 'onChange' | 'fits' | 'pin' | 'unpin'>

/** An entry came or went (the primary passes these on to its workers' views of the index). */
export type IndexChange = { digest: string; size: number } | { digest: string; removed: true }

/**
 * The cache's size-bounded LRU. lru-cache keeps the recency order (keyed by digest, sized by
 * the file size); eviction is done here rather than by lru-cache itself because entries that
 * are pinned or being read must be skipped, not dropped. Space for a fill is reserved when it
 * starts, so downloads in progress count against the cap too.
 */
export class LruIndex {
  private readonly lru = new LRUCache<string, Entry>({
    maxSize: Number.MAX_SAFE_INTEGER,
    sizeCalculation: (e) => Math.max(1, e.size),
  })
  private readonly inUse = new Map<string, number>()
  private pinned = new Set<string>()
  private bytes = 0
  private reserved = 0
  private readonly touches = new Set<Promise<void>>()
  /**
   * Runs before an evicted file is deleted (app.ts: the manifest's media-type record goes first, so
   * a tag link whose manifest has neither file nor record reads as evicted, not as lost).
   */
  beforeRemove: (digest: string) => Promise<void> = async () => {}
  /** Hears of every entry added or removed (workers: src/workers/index-host.ts). */
  onChange: (c: IndexChange) => void = () => {}

  constructor(
    private readonly store: BlobStore,
    readonly maxSize: number,
    private readonly touchInterval: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.metrics.cacheMaxBytes.set(maxSize)
  }

  /** Rebuilds the index from disk, oldest access first so the recency order survives a restart. */
  async load(): Promise<void> {
    const entries = await this.store.scan()
    entries.sort((a, b) => a.mtimeMs - b.mtimeMs)
    for (const e of entries) {
      this.lru.set(e.digest, { size: e.size, lastTouch: e.mtimeMs })
      this.bytes += e.size
      this.onChange({ digest: e.digest, size: e.size })
    }
    this.updateGauges()
    if (this.bytes > this.maxSize) await this.evict(0)
  }

  get size(): number {
    return this.bytes
  }

  get count(): number {
    return this.lru.size
  }

  has(digest: string): boolean {
    return this.lru.has(digest)
  }

  sizeOf(digest: string): number | undefined {
    return this.lru.peek(digest)?.size
  }

  /** Digests from least to most recently used. */
  order(): string[] {
    return [...this.lru.rkeys()]
  }

  /** Marks an access; the file's mtime carries recency across restarts, written at most once per interval. */
  touch(digest: string): void {
    const e = this.lru.get(digest)
    if (!e) return
    const now = Date.now()
    if (now - e.lastTouch >= this.touchInterval) {
      e.lastTouch = now
      const p: Promise<void> = this.store.touch(parseDigest(digest), new Date(now)).finally(() => this.touches.delete(p))
      this.touches.add(p)
    }
  }

  /** Waits for access times still being written, so the next start sees them. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.touches])
  }

  /** Whether content of this size can be kept at all (a blob larger than the cache is streamed through). */
  fits(size: number): boolean {
    return size <= this.maxSize - this.pinnedBytes()
  }

  /**
   * Makes room for a download that is starting; false if there is no room even after evicting
   * everything that may go (the rest being pinned or read right now): the blob is then streamed
   * through rather than let the cache grow past its cap.
   */
  async reserve(size: number): Promise<boolean> {
    if (!this.fits(size)) return false
    // Nothing is evicted for a blob that could not be kept anyway. The reservation is taken
    // before the files are deleted so a concurrent reservation cannot claim the same room.
    const victims = this.takeVictims(size, true)
    if (victims === undefined) return false
    this.reserved += size
    await this.removeFiles(victims)
    return true
  }

  release(size: number): void {
    this.reserved = Math.max(0, this.reserved - size)
  }

  /** Records committed content; `reservedSize` is what its fill reserved. */
  async add(digest: string, size: number, reservedSize = 0): Promise<void> {
    this.release(reservedSize)
    if (!this.lru.has(digest)) {
      this.lru.set(digest, { size, lastTouch: Date.now() })
      this.bytes += size
      this.onChange({ digest, size })
    } else this.lru.get(digest)
    await this.evict(0)
    this.updateGauges()
  }

  /**
   * The size of `digest` in the cache, indexing its file first if another process (`regmirror
   * import`, `preload`) put it there since this index was loaded. Such files were verified and
   * renamed into place the way fills do it, so they are trusted as load() trusts the directory.
   */
  async adopt(digest: string): Promise<number | undefined> {
    const known = this.sizeOf(digest)
    if (known !== undefined) return known
    const size = await this.store.size(parseDigest(digest))
    if (size === undefined) return undefined
    await this.add(digest, size)
    return this.sizeOf(digest)
  }

  /** Forgets an entry whose file is gone or corrupt (not counted as an eviction). */
  forget(digest: string): void {
    const e = this.lru.peek(digest)
    if (!e) return
    this.lru.delete(digest)
    this.bytes -= e.size
    this.onChange({ digest, removed: true })
    this.updateGauges()
  }

  /** adopt() and acquire() at once: the size of a cached blob, held in use; undefined (and not held) when it is not cached. */
  async hold(digest: string): Promise<number | undefined> {
    const size = await this.adopt(digest)
    if (size !== undefined) this.acquire(digest)
    return size
  }

  acquire(digest: string): void {
    this.inUse.set(digest, (this.inUse.get(digest) ?? 0) + 1)
  }

  releaseUse(digest: string): void {
    const n = (this.inUse.get(digest) ?? 0) - 1
    if (n <= 0) this.inUse.delete(digest)
    else this.inUse.set(digest, n)
  }

  pin(digest: string): void {
    this.pinned.add(digest)
    this.updateGauges()
  }

  unpin(digest: string): void {
    this.pinned.delete(digest)
    this.updateGauges()
  }

  /** Replaces the pinned set (Pins computes it from the configured images). */
  setPinned(digests: Set<string>): void {
    this.pinned = digests
    this.updateGauges()
  }

  isPinned(digest: string): boolean {
    return this.pinned.has(digest)
  }

  pinnedBytes(): number {
    let n = 0
    for (const d of this.pinned) n += this.lru.peek(d)?.size ?? 0
    return n
  }

  /**
   * Evicts least recently used entries, skipping pinned and in-use ones, until `extra` more
   * bytes fit. With `allOrNothing`, evicts nothing unless that makes enough room. Returns
   * whether the room is there; the files are deleted before it resolves.
   */
  private async evict(extra: number, allOrNothing = false): Promise<boolean> {
    const victims = this.takeVictims(extra, allOrNothing)
    if (victims === undefined) return false
    await this.removeFiles(victims)
    return true
  }

  /**
   * The index side of eviction, synchronous so that concurrent callers never pick the same
   * victim or count freed bytes twice. undefined: not enough room (and, with allOrNothing,
   * nothing taken).
   */
  private takeVictims(extra: number, allOrNothing: boolean): [string, number][] | undefined {
    let over = this.bytes + this.reserved + extra - this.maxSize
    if (over <= 0) return []
    const victims: [string, number][] = []
    for (const digest of this.lru.rkeys()) {
      if (over <= 0) break
      if (this.pinned.has(digest) || this.inUse.has(digest)) continue
      const e = this.lru.peek(digest)
      if (!e) continue
      victims.push([digest, e.size])
      over -= e.size
    }
    if (over > 0 && allOrNothing) return undefined
    for (const [digest, size] of victims) {
      this.lru.delete(digest)
      this.bytes -= size
      this.onChange({ digest, removed: true })
      this.metrics.evictions.inc()
      this.metrics.evictedBytes.inc(size)
    }
    if (victims.length > 0) {
      this.log.debug({ evicted: victims.length }, 'evicted cache entries')
      this.updateGauges()
    }
    return over <= 0 ? victims : allOrNothing ? undefined : victims
  }

  private async removeFiles(victims: [string, number][]): Promise<void> {
    for (const [digest] of victims) {
      try {
        await this.beforeRemove(digest)
        await this.store.remove(parseDigest(digest))
      } catch (err) {
        this.log.error({ err, digest }, 'could not delete evicted blob')
      }
    }
  }

  private updateGauges(): void {
    this.metrics.cacheBytes.set(this.bytes)
    this.metrics.cacheEntries.set(this.lru.size)
    this.metrics.pinnedBytes.set(this.pinnedBytes())
  }
}
