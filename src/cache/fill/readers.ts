import { Readable } from 'node:stream'
import { RegmirrorError } from '../../errors.js'

// The stream's queue: a reader keeping up with the download queues views of the fill's shared
// tail (no memory of its own); one behind it, about two reads of its own from the temp file.
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
  /**
   * Up to `len` bytes from `pos` (at least one when `pos` was written): a view of the fill's
   * in-memory tail when it still holds them, else read from the temp file or the memory window.
   */
  read(pos: number, len: number): Promise<Buffer>
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
    const buf = await fill.read(this.pos, limit - this.pos)
    if (stream.destroyed) return 'end'
    if (buf.length === 0) throw new RegmirrorError('CACHE_IO', 'temp file shorter than written')
    this.pos += buf.length
    this.mark.pos = this.pos
    fill.advanced()
    return stream.push(buf) ? 'more' : 'paused'
  }
}
