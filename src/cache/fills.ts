import type { Logger } from '../log.js'
import type { Digest } from '../oci/reference.js'
import { Admission } from './admission.js'
import type { BlobStore } from './blob-store.js'
import { Fill, type FillEvents, type FillSource } from './fill/fill.js'
import type { BlobHandle } from './hits.js'
import type { CacheIndex } from './lru-index.js'

/** What asking the other workers gave: a handle on another worker's download, or the news that it is cached now. */
export interface Shared {
  handle?: BlobHandle
  cached?: boolean
}

/** With several worker processes: their downloads, one per digest (src/workers/shared-fills.ts implements it). */
export interface SharedFills {
  /** Before a fill of `d` starts here: follow another worker's download of it, or learn it is cached, or own it ({}). */
  share(d: Digest): Promise<Shared>
  /** A fill started here (reported when this worker owns the digest). */
  started(fill: Fill, tmpPath: string): void
  /** The fill `share` let this worker own will not start after all. */
  abandon(d: Digest): void
  /** Whether any worker downloads `d` now. */
  active(d: Digest): Promise<boolean>
}

/**
 * The fills in progress, at most one joinable fill per digest: whoever asks for a digest that
 * is being downloaded reads that download instead of starting another.
 */
export class Fills {
  private readonly fills = new Map<string, Fill>()

  constructor(
    private readonly store: BlobStore,
    private readonly index: CacheIndex,
    private readonly log: Logger,
    private readonly resumeAttempts: number,
    /** The other workers' downloads, when there are workers. */
    readonly shared?: SharedFills,
  ) {}

  /** The cache's cap, for messages about room. */
  get maxSize(): number {
    return this.index.maxSize
  }

  /** The fill of `d` in progress, if any (it may have failed, or be past joining). */
  get(d: Digest): Fill | undefined {
    return this.fills.get(d.value)
  }

  /**
   * The fill a new client can read from its start: not failed, and (if uncached) with its memory
   * window still whole. A failed fill stays in the map until its promise settles.
   */
  joinable(d: Digest): Fill | undefined {
    const fill = this.fills.get(d.value)
    return fill && fill.state !== 'failed' && fill.joinable() ? fill : undefined
  }

  /**
   * Starts a fill of `d` from `source`; it replaces any fill of `d` that can no longer be joined.
   * With `keep: false` the blob is streamed to its readers and not kept; `onKept` runs once it is in
   * the cache, before its readers get their last byte.
   */
  start(d: Digest, source: FillSource, events: FillEvents, opts: { keep?: boolean; onKept?: () => Promise<void> } = {}): Fill {
    const admission = new Admission(this.store, this.index, d, this.log)
    const keep = opts.keep ?? true
    const tmpPath = this.store.tmpPathFor(d)
    const fill = new Fill(
      d,
      tmpPath,
      source,
      {
        admit: async (size) => keep && (await admission.admit(size)),
        reserveMore: (bytes) => admission.reserveMore(bytes),
        commit: async (path, size) => {
          await admission.commit(path, size)
          await opts.onKept?.()
        },
        abandon: () => admission.abandon(),
        ...events,
      },
      this.resumeAttempts,
      { openFile: (p) => this.store.openTemp(p), maxUnsized: this.index.maxSize },
    )
    this.fills.set(d.value, fill)
    const forget = () => {
      // A newer fill may already have taken the slot.
      if (this.fills.get(d.value) === fill) this.fills.delete(d.value)
    }
    fill.finished.then(forget, forget)
    this.shared?.started(fill, tmpPath)
    return fill.start()
  }

  /** Whether `d` is being downloaded here or, with workers, by another worker. */
  async anywhere(d: Digest): Promise<boolean> {
    return this.fills.has(d.value) || ((await this.shared?.active(d)) ?? false)
  }

  active(): Fill[] {
    return [...this.fills.values()]
  }
}
