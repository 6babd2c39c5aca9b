import type { Logger } from '../log.js'
import type { Digest } from '../oci/reference.js'
import { Admission } from './admission.js'
import type { BlobStore } from './blob-store.js'
import { Fill, type FillEvents, type FillSource } from './fill/fill.js'
import type { LruIndex } from './lru-index.js'

/**
 * The fills in progress, at most one joinable fill per digest: whoever asks for a digest that
 * is being downloaded reads that download instead of starting another.
 */
export class Fills {
  private readonly fills = new Map<string, Fill>()

  constructor(
    private readonly store: BlobStore,
    private readonly index: LruIndex,
    private readonly log: Logger,
    private readonly resumeAttempts: number,
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
    const fill = new Fill(
      d,
      this.store.tmpPathFor(d),
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
    return fill.start()
  }

  active(): Fill[] {
    return [...this.fills.values()]
  }
}
