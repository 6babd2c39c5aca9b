import type { IndexChange, LruIndex } from '../cache/lru-index.js'
import type { IndexSnapshot, IndexStats } from './protocol.js'

/**
 * The primary's side of the shared index: one LruIndex (loaded once, evicting only here), and what
 * each worker holds of it, so that a worker that dies gives back its in-use holds and reservations
 * without anyone's help. In-use counts are per worker; the index sees the sum. Pins are the union of
 * every worker's set and the primary's own (each worker learns of the tags it resolves).
 */
export class IndexHost {
  private readonly holds = new Map<number, Map<string, number>>()
  private readonly reserved = new Map<number, number>()
  private readonly pins = new Map<number, Set<string>>()
  private pending: IndexChange[] = []
  private flushing = false

  constructor(
    readonly index: LruIndex,
    /** Sends the changes and totals to every worker (batched per turn of the event loop). */
    private readonly broadcast: (m: { changes: IndexChange[]; stats: IndexStats }) => void,
    /** Whether a worker still runs: an answer that comes after it died must not leave a hold or a reservation behind. */
    private readonly alive: (worker: number) => boolean = () => true,
  ) {
    index.onChange = (c) => {
      this.pending.push(c)
      if (this.flushing) return
      this.flushing = true
      setImmediate(() => this.flush())
    }
  }

  snapshot(): IndexSnapshot {
    const entries: [string, number][] = []
    for (const d of this.index.order()) entries.push([d, this.index.sizeOf(d) as number])
    return { entries, stats: this.stats() }
  }

  stats(): IndexStats {
    return { bytes: this.index.size, count: this.index.count, pinnedBytes: this.index.pinnedBytes() }
  }

  async reserve(worker: number, size: number): Promise<boolean> {
    const ok = await this.index.reserve(size)
    if (ok && !this.alive(worker)) {
      this.index.release(size)
      return false
    }
    if (ok) this.reserved.set(worker, (this.reserved.get(worker) ?? 0) + size)
    return ok
  }

  release(worker: number, size: number): void {
    const n = Math.min(size, this.reserved.get(worker) ?? 0)
    this.reserved.set(worker, (this.reserved.get(worker) ?? 0) - n)
    this.index.release(n)
  }

  async add(worker: number, digest: string, size: number, reservedSize: number): Promise<void> {
    const n = Math.min(reservedSize, this.reserved.get(worker) ?? 0)
    this.reserved.set(worker, (this.reserved.get(worker) ?? 0) - n)
    await this.index.add(digest, size, n)
  }

  /** adopt + acquire for `worker`, in one step so no eviction comes between them. */
  async hold(worker: number, digest: string): Promise<number | undefined> {
    const size = await this.index.adopt(digest)
    if (size === undefined || !this.alive(worker)) return undefined
    this.acquire(worker, digest)
    return size
  }

  acquire(worker: number, digest: string): void {
    let mine = this.holds.get(worker)
    if (!mine) this.holds.set(worker, (mine = new Map()))
    mine.set(digest, (mine.get(digest) ?? 0) + 1)
    this.index.acquire(digest)
  }

  releaseUse(worker: number, digest: string): void {
    const mine = this.holds.get(worker)
    const n = mine?.get(digest) ?? 0
    // A release the primary has no hold for (a restarted worker's late message) changes nothing.
    if (!mine || n === 0) return
    if (n === 1) mine.delete(digest)
    else mine.set(digest, n - 1)
    this.index.releaseUse(digest)
  }

  /** `worker` 0 is the primary's own pins (configured ones, resolved before the index loads). */
  setPins(worker: number, digests: Iterable<string>): void {
    this.pins.set(worker, new Set(digests))
    this.applyPins()
  }

  private applyPins(): void {
    const all = new Set<string>()
    for (const set of this.pins.values()) for (const d of set) all.add(d)
    this.index.setPinned(all)
    // The pinned bytes changed without an entry changing: the workers' totals must hear of it.
    this.index.onChange({ digest: '', removed: true })
  }

  /** In use by any worker (tests, status). */
  inUseBy(worker: number, digest: string): number {
    return this.holds.get(worker)?.get(digest) ?? 0
  }

  /** A worker exited: its holds, reservations and pins go with it. */
  workerGone(worker: number): void {
    for (const [digest, n] of this.holds.get(worker) ?? []) for (let i = 0; i < n; i++) this.index.releaseUse(digest)
    this.holds.delete(worker)
    this.index.release(this.reserved.get(worker) ?? 0)
    this.reserved.delete(worker)
    if (this.pins.delete(worker)) this.applyPins()
  }

  private flush(): void {
    this.flushing = false
    // The empty digest only asks for the totals to be sent.
    const changes = this.pending.filter((c) => c.digest !== '')
    this.pending = []
    this.broadcast({ changes, stats: this.stats() })
  }
}
