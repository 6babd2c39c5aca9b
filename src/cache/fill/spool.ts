import { isWriteError } from '../../errors.js'
import { SLAB, Tail } from './tail.js'
import type { TempFile } from './temp-file.js'

// Written bytes the tail keeps for readers a little behind the download (more read from the file).
const TAIL_KEEP = 2 * SLAB
// Received bytes not yet written past which the download waits for the disk: writes go on in the
// background while the next bytes arrive and are hashed, but memory stays bounded per fill.
const MAX_UNWRITTEN = 4 * SLAB

/**
 * A disk-mode fill's way to its temp file: received bytes go into the in-memory tail (tail.ts),
 * whose full slabs a background writer appends to the file, one write at a time, in order. A
 * write error is handed to `onWriteError` (the fill goes to memory mode and takes the unwritten
 * bytes with `takeUnwritten`); any other failure is thrown to the next `append` or `flush`.
 */
export class Spool {
  readonly tail = new Tail()
  private writer: Promise<void> | undefined
  private failure: unknown
  private all = false
  private stopped = false

  constructor(
    private readonly file: TempFile,
    private readonly onWriteError: (err: NodeJS.ErrnoException) => void,
  ) {}

  /** Bytes received, not yet on disk. */
  get unwritten(): number {
    // Never below 0: a fill that closed its file resets the tail while a write may still be in flight.
    return this.stopped ? 0 : Math.max(0, this.tail.end - this.file.end)
  }

  async append(buf: Buffer): Promise<void> {
    this.tail.append(buf)
    await this.flush(false)
  }

  /** Starts the writer on full slabs (`all`: on every byte); waits when too much is unwritten, with `all` until done. */
  async flush(all: boolean): Promise<void> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      const pending = this.unwritten
      if (!this.writer && pending >= (all ? 1 : SLAB)) {
        this.all = all
        this.writer = this.writeOut().finally(() => (this.writer = undefined))
      }
      if (!this.writer || (!all && pending <= MAX_UNWRITTEN)) return
      await this.writer
    }
  }

  /** Stops writing (memory mode): the bytes not on disk go to `push`, in order, and the tail is emptied. */
  takeUnwritten(push: (buf: Buffer) => void): void {
    for (let pos = this.file.end; pos < this.tail.end;) {
      const v = this.tail.view(pos, SLAB) as Buffer
      push(v)
      pos += v.length
    }
    this.stopped = true
    this.tail.reset(this.file.end)
  }

  private async writeOut(): Promise<void> {
    try {
      for (;;) {
        const pending = this.unwritten
        if (pending === 0 || (pending < SLAB && !this.all)) return
        try {
          await this.file.write(this.tail.view(this.file.end, pending) as Buffer)
        } catch (err) {
          if (!isWriteError(err)) throw err
          this.onWriteError(err)
        }
        this.tail.trim(this.file.end - TAIL_KEEP)
      }
    } catch (err) {
      this.failure = err
    }
  }
}
