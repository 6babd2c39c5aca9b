import { createHash, type Hash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { open, unlink, type FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { RegmirrorError, isRegmirrorError } from '../errors.js'
import type { Digest } from '../oci/reference.js'

/** One opened upstream body: from `offset` to the end of the blob. */
export interface FillBody {
  body: AsyncIterable<Uint8Array>
  /** The whole blob's size when the upstream said it (Content-Length or Content-Range). */
  total: number | undefined
  /** Stops the upstream body (on failure or when abandoning an attempt). */
  abort(): void
}

export interface FillSource {
  /** Opens the upstream body from `offset` (0, or where a broken download stopped). */
  open(offset: number): Promise<FillBody>
}

export interface FillHooks {
  /** Decides, once the size is known, whether to keep the blob (reserving room) or stream it through. */
  admit(size: number | undefined): Promise<boolean>
  /** Moves the verified temp file into the store and indexes it. */
  commit(tmpPath: string, size: number): Promise<void>
  /** Gives back what admit reserved when the fill fails or the blob is not kept. */
  abandon(size: number | undefined): void
  onResume?(offset: number, attempt: number, err: unknown): void
  onFailed?(err: RegmirrorError): void
}

export type FillState = 'starting' | 'running' | 'done' | 'failed'

// Per reader, at most about two chunks are buffered (the stream's queue and one write in
// flight); with a hundred readers of a fill that is what the mirror's memory is made of.
const CHUNK = 64 * 1024

/**
 * One upstream download of one digest (see DESIGN.md, "The fill"). The download is written
 * to a temp file while hashed; clients are readers that follow the file as it grows through
 * the fill's own file handle (positional reads), so late joiners catch up from disk, slow
 * readers never slow the download, and memory stays flat. A reader holds back its last byte
 * until the digest has been verified, so no client ever sees a complete response of bytes
 * that turned out to be wrong: on failure every reader is destroyed instead.
 */
export class Fill extends EventEmitter {
  state: FillState = 'starting'
  size: number | undefined
  written = 0
  error: RegmirrorError | undefined
  kept = false
  readonly ready: Promise<number | undefined>
  readonly finished: Promise<void>
  private fh: FileHandle | undefined
  private refs = 1
  private resolveReady!: (size: number | undefined) => void
  private rejectReady!: (err: unknown) => void
  private resolveFinished!: () => void
  private rejectFinished!: (err: unknown) => void

  constructor(
    readonly digest: Digest,
    private readonly tmpPath: string,
    private readonly source: FillSource,
    private readonly hooks: FillHooks,
    private readonly resumeAttempts: number,
  ) {
    super()
    this.setMaxListeners(0)
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res
      this.rejectReady = rej
    })
    this.finished = new Promise((res, rej) => {
      this.resolveFinished = res
      this.rejectFinished = rej
    })
    // Callers that only stream may never await these; failures reach them through readers.
    this.ready.catch(() => {})
    this.finished.catch(() => {})
  }

  start(): this {
    void this.run()
    return this
  }

  private async run(): Promise<void> {
    let admitted = false
    let current: FillBody | undefined
    try {
      this.fh = await open(this.tmpPath, 'w+')
      current = await this.source.open(0)
      this.size = current.total
      admitted = await this.hooks.admit(this.size)
      this.kept = admitted
      this.state = 'running'
      this.resolveReady(this.size)
      this.emit('change')
      const hash = createHash('sha256')
      let attempt = 0
      for (;;) {
        try {
          await this.drain(current, hash)
          break
        } catch (err) {
          current.abort()
          // Only a broken transfer is resumed; wrong content is final.
          if (isRegmirrorError(err, 'SIZE_MISMATCH') || attempt >= this.resumeAttempts || this.size === undefined) throw err
          attempt++
          this.hooks.onResume?.(this.written, attempt, err)
          current = await this.reopen()
        }
      }
      if (this.size !== undefined && this.written !== this.size) {
        throw new RegmirrorError('SIZE_MISMATCH', 'upstream sent fewer bytes than it announced', {
          detail: { digest: this.digest.value, expected: this.size, received: this.written },
        })
      }
      const actual = hash.digest('hex')
      if (actual !== this.digest.hex) {
        throw new RegmirrorError('DIGEST_MISMATCH', 'upstream content does not match its digest', {
          detail: { digest: this.digest.value, actual: `sha256:${actual}` },
        })
      }
      this.size = this.written
      await this.fh.sync()
      if (admitted) {
        await this.hooks.commit(this.tmpPath, this.written)
      } else {
        // Too big to keep: readers still hold the handle, the name can go now.
        await unlink(this.tmpPath).catch(() => {})
        this.hooks.abandon(this.size)
      }
      this.state = 'done'
      this.emit('change')
      this.resolveFinished()
    } catch (err) {
      current?.abort()
      const e = isRegmirrorError(err)
        ? err
        : new RegmirrorError('UPSTREAM_ERROR', 'blob download failed', { cause: err, detail: { digest: this.digest.value } })
      this.error = e
      this.state = 'failed'
      if (admitted) this.hooks.abandon(this.size)
      await unlink(this.tmpPath).catch(() => {})
      this.hooks.onFailed?.(e)
      this.rejectReady(e)
      this.emit('change')
      this.rejectFinished(e)
    } finally {
      this.unref()
    }
  }

  /** Continues a broken download from the byte reached; the running hash carries on. */
  private async reopen(): Promise<FillBody> {
    const next = await this.source.open(this.written)
    if (next.total !== undefined && this.size !== undefined && next.total !== this.size) {
      next.abort()
      throw new RegmirrorError('SIZE_MISMATCH', 'upstream changed the blob size between attempts', {
        detail: { digest: this.digest.value },
      })
    }
    return next
  }

  private async drain(current: FillBody, hash: Hash): Promise<void> {
    const fh = this.fh as FileHandle
    for await (const chunk of current.body) {
      const buf = chunk instanceof Buffer ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      if (this.size !== undefined && this.written + buf.length > this.size) {
        throw new RegmirrorError('SIZE_MISMATCH', 'upstream sent more bytes than it announced', {
          detail: { digest: this.digest.value, expected: this.size },
        })
      }
      hash.update(buf)
      let off = 0
      while (off < buf.length) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off, this.written)
        off += bytesWritten
        this.written += bytesWritten
      }
      this.emit('change')
    }
  }

  /** Keeps the temp file's handle open until the returned function is called. */
  retain(): () => void {
    this.refs++
    let released = false
    return () => {
      if (!released) {
        released = true
        this.unref()
      }
    }
  }

  private unref(): void {
    if (--this.refs === 0) {
      void this.fh?.close().catch(() => {})
      this.fh = undefined
    }
  }

  /**
   * A reader of bytes [start, end] (inclusive). Call after `ready` resolved. It reads what
   * is on disk, waits for more, and ends only once the fill is verified.
   */
  createReader(start: number, end: number): Readable {
    if (this.fh === undefined) throw new RegmirrorError('INTERNAL', 'reader created after the fill closed its file')
    const release = this.retain()
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const fill = this
    let pos = start
    let pumping = false
    let waiting: (() => void) | undefined
    const stream = new Readable({
      highWaterMark: CHUNK,
      read() {
        void pump()
      },
      destroy(err, cb) {
        if (waiting) fill.off('change', waiting)
        release()
        cb(err)
      },
    })
    const pump = async (): Promise<void> => {
      if (pumping) return
      pumping = true
      try {
        for (;;) {
          if (stream.destroyed) return
          if (fill.state === 'failed') {
            stream.destroy(fill.error)
            return
          }
          const done = fill.state === 'done'
          if (pos > end) {
            if (done) {
              stream.push(null)
              release()
              return
            }
          } else {
            // Everything but the final byte may go before verification.
            const limit = done ? end + 1 : Math.min(fill.written, end)
            if (pos < limit) {
              const len = Math.min(CHUNK, limit - pos)
              const buf = Buffer.allocUnsafe(len)
              const { bytesRead } = await (fill.fh as FileHandle).read(buf, 0, len, pos)
              if (stream.destroyed) return
              if (bytesRead === 0) throw new RegmirrorError('CACHE_IO', 'temp file shorter than written')
              pos += bytesRead
              if (!stream.push(bytesRead === len ? buf : buf.subarray(0, bytesRead))) return
              continue
            }
          }
          await new Promise<void>((resolve) => {
            waiting = () => {
              waiting = undefined
              resolve()
            }
            fill.once('change', waiting)
          })
        }
      } catch (err) {
        stream.destroy(err as Error)
      } finally {
        pumping = false
      }
    }
    return stream
  }
}
