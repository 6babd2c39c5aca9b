import { Readable } from 'node:stream'
import { RegmirrorError } from '../../errors.js'

// Per reader, at most about two chunks are buffered (the stream's queue and one read in flight);
// with a hundred readers of a fill that is what the mirror's memory is made of. 256 KiB, like
// cache hits: against 64 KiB, 8 and 32 concurrent cold readers finished 20-30% sooner.
const CHUNK = 256 * 1024

/** A position a reader (or a client about to open one) still needs bytes from. */
export interface Mark {
  pos: number
}

/** What a reader sees of its fill. */
export interface FillView {
  readonly state: 'starting' | 'running' | 'done' | 'failed'
  readonly error: RegmirrorError | undefined
  /** Bytes downloaded (and hashed) so far. */
  readonly written: number
  /** Reads bytes [pos, pos+len) from the temp file or the memory window; returns how many. */
  read(buf: Buffer, pos: number, len: number): Promise<number>
  /** Resolves at the fill's next change (more bytes, done, failed). */
  changed(): { promise: Promise<void>; cancel(): void }
  /** A reader moved on: the memory window may shrink, the download go on. */
  advanced(): void
}

/**
 * A reader of bytes [start, end] (inclusive) of a fill: it reads what is there, waits for more,
 * and holds back its last byte until the fill is verified, so no client ever gets a complete
 * response of bytes that turned out wrong; if the fill fails, the reader is destroyed instead.
 * `mark` tells the fill how far the reader got; `release` is called once when it ends.
 */
export function openReader(fill: FillView, start: number, end: number, mark: Mark, release: () => void): Readable {
  return new FillReader(fill, start, end, mark, release).stream
}

class FillReader {
  readonly stream: Readable
  private pos: number
  private pumping = false
  private wait: { cancel(): void } | undefined
  private released = false

  constructor(
    private readonly fill: FillView,
    start: number,
    private readonly end: number,
    private readonly mark: Mark,
    private readonly release: () => void,
  ) {
    this.pos = start
    mark.pos = start
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the stream's callbacks need the reader, not the stream
    const reader = this
    this.stream = new Readable({
      highWaterMark: CHUNK,
      read() {
        void reader.pump()
      },
      destroy(err, cb) {
        reader.wait?.cancel()
        reader.done()
        cb(err)
      },
    })
  }

  private done(): void {
    if (this.released) return
    this.released = true
    this.fill.advanced()
    this.release()
  }

  private async pump(): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      for (;;) {
        if (this.stream.destroyed) return
        const next = await this.step()
        if (next === 'end' || next === 'paused' || this.stream.destroyed) return
        if (next === 'more') continue
        const change = this.fill.changed()
        this.wait = change
        await change.promise
        this.wait = undefined
      }
    } catch (err) {
      this.stream.destroy(err as Error)
    } finally {
      this.pumping = false
    }
  }

  /** One read: 'more' to go on now, 'paused' when the client's buffer is full, 'wait' for the fill's next change. */
  private async step(): Promise<'more' | 'paused' | 'wait' | 'end'> {
    const { fill, stream } = this
    if (fill.state === 'failed') {
      stream.destroy(fill.error)
      return 'end'
    }
    const finished = fill.state === 'done'
    // Once done the blob's real end is known, also where the upstream never said its size.
    const last = finished ? Math.min(this.end, fill.written - 1) : this.end
    if (this.pos > last && finished) {
      stream.push(null)
      this.done()
      return 'end'
    }
    // Everything but the final byte may go before verification.
    const limit = finished ? last + 1 : Math.min(fill.written, last)
    if (this.pos >= limit) return 'wait'
    const len = Math.min(CHUNK, limit - this.pos)
    const buf = Buffer.allocUnsafe(len)
    const n = await fill.read(buf, this.pos, len)
    if (stream.destroyed) return 'end'
    if (n === 0) throw new RegmirrorError('CACHE_IO', 'temp file shorter than written')
    this.pos += n
    this.mark.pos = this.pos
    fill.advanced()
    return stream.push(n === len ? buf : buf.subarray(0, n)) ? 'more' : 'paused'
  }
}
