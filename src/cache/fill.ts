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
  /**
   * For a blob whose size the upstream did not say: reserves `bytes` more room before the temp
   * file grows past what is reserved. false: no room, and the fill fails (BLOB_SIZE_UNKNOWN).
   */
  reserveMore?(bytes: number): Promise<boolean>
  /** Moves the verified temp file into the store and indexes it. */
  commit(tmpPath: string, size: number): Promise<void>
  /** Gives back what admit reserved when the fill fails or the blob is not kept. */
  abandon(size: number | undefined): void
  onResume?(offset: number, attempt: number, err: unknown): void
  onFailed?(err: RegmirrorError): void
  /** The temp file could not be opened or written (full disk, unwritable directory): the fill goes on uncached. */
  onWriteError?(err: NodeJS.ErrnoException, offset: number): void
}

export interface FillOptions {
  /** Opens the temp file; a seam so tests can simulate a full disk (root ignores permissions). */
  openFile?: (path: string) => Promise<FileHandle>
  /** Bytes an uncached (memory-mode) fill may hold for readers that lag behind (default 4 MiB). */
  memoryWindow?: number
  /** The most a blob of unannounced size may be while the disk is not written (default: no limit). */
  maxUnsized?: number
}

export type FillState = 'starting' | 'running' | 'done' | 'failed'

// Per reader, at most about two chunks are buffered (the stream's queue and one write in
// flight); with a hundred readers of a fill that is what the mirror's memory is made of.
// 256 KiB, like cache hits: against 64 KiB, 8 and 32 concurrent cold readers finished 20-30%
// sooner (fewer reads and pushes per byte) with the same peak RSS.
const CHUNK = 256 * 1024
const MEMORY_WINDOW = 4 * 1024 * 1024
// Readers wait for the fsync before their last byte; flushing as the download goes leaves that
// final fsync only the tail (~30 ms instead of ~170 ms for 150 MiB on the bench machine's disk).
const SYNC_EVERY = 32 * 1024 * 1024
// Room for a blob of unknown size is reserved in steps of this much as it downloads.
const RESERVE_STEP = 16 * 1024 * 1024
/** sha256 of nothing: the one digest whose content is empty. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

/**
 * One upstream download of one digest (see DESIGN.md, "The fill"). The download is written
 * to a temp file while hashed; clients are readers that follow the file as it grows through
 * the fill's own file handle (positional reads), so late joiners catch up from disk, slow
 * readers never slow the download, and memory stays flat. A reader holds back its last byte
 * until the digest has been verified, so no client ever sees a complete response of bytes
 * that turned out to be wrong: on failure every reader is destroyed instead.
 *
 * When the temp file cannot be opened or written (ENOSPC, EACCES, EROFS) the fill does not
 * fail: it goes on in memory mode, where bytes past those already on disk are kept in a
 * bounded window that the slowest reader drains, so clients are still served, nothing is
 * cached, and memory stays bounded. In that mode the download stops once no one reads it.
 *
 * Resume attempts are counted without progress: an attempt that moved the download forward
 * resets the count, so a lossy link that breaks every few megabytes still completes a large
 * blob, while an upstream that keeps failing at the same byte gives up after
 * `resumeAttempts` tries.
 */
export class Fill extends EventEmitter {
  state: FillState = 'starting'
  size: number | undefined
  written = 0
  error: RegmirrorError | undefined
  kept = false
  /** 'memory' once the temp file could not be written: nothing will be cached. */
  mode: 'disk' | 'memory' = 'disk'
  /** Bytes on disk in the temp file (equals `written` in disk mode). */
  private diskEnd = 0
  /** Unknown size: how far the temp file may grow on what reserveMore granted so far. */
  private granted = 0
  /** A background datasync in flight, and the first failure of one (see syncAhead). */
  private syncing: Promise<void> | undefined
  private syncFailure: NodeJS.ErrnoException | undefined
  private syncedTo = 0
  /** Memory mode: bytes [winStart, written) not on disk, for the readers still to send them. */
  private window: Buffer[] = []
  private winStart = 0
  private winBytes = 0
  private readonly readerPos = new Set<{ pos: number }>()
  private orphaned = false
  private cancelled = false
  private current: FillBody | undefined
  private readonly openFile: (path: string) => Promise<FileHandle>
  private readonly memoryWindow: number
  private readonly maxUnsized: number
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
    opts: FillOptions = {},
  ) {
    super()
    this.openFile = opts.openFile ?? ((p) => open(p, 'w+'))
    this.memoryWindow = opts.memoryWindow ?? MEMORY_WINDOW
    this.maxUnsized = opts.maxUnsized ?? Number.MAX_SAFE_INTEGER
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
    try {
      this.current = await this.source.open(0)
      if (this.cancelled) throw cancelledError()
      this.size = this.current.total
      // No bytes to hold back: an empty body is complete at once, so it must be decided now.
      if (this.size === 0 && this.digest.hex !== EMPTY_SHA256) {
        throw new RegmirrorError('DIGEST_MISMATCH', 'upstream sent an empty body for a blob that is not empty', {
          detail: { digest: this.digest.value },
        })
      }
      admitted = await this.hooks.admit(this.size)
      if (admitted) await this.openTemp()
      // Not kept: nothing goes to disk (the cache's cap bounds tmp/ too); readers share a memory window.
      else this.toMemory(undefined)
      this.kept = admitted && this.mode === 'disk'
      this.state = 'running'
      this.resolveReady(this.size)
      this.emit('change')
      const hash = createHash('sha256')
      let attempt = 0
      for (;;) {
        const before = this.written
        try {
          await this.drain(this.current, hash)
          break
        } catch (failure) {
          this.current.abort()
          let err = failure
          // Only a broken transfer is resumed; wrong content is final.
          if (this.orphaned || this.cancelled || isRegmirrorError(err, 'SIZE_MISMATCH') || this.size === undefined) throw err
          // The connection broke after the last announced byte arrived: there is nothing left to ask
          // for (a Range past the end is a 416), and the digest check below decides.
          if (this.written === this.size) break
          if (this.written > before) attempt = 0
          for (;;) {
            if (attempt >= this.resumeAttempts) throw err
            attempt++
            this.hooks.onResume?.(this.written, attempt, err)
            try {
              this.current = await this.reopen()
              if (this.cancelled) throw cancelledError()
              break
            } catch (e) {
              if (this.cancelled || isRegmirrorError(e, 'SIZE_MISMATCH')) throw e
              err = e
            }
          }
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
      if (this.mode === 'disk') {
        try {
          await this.syncing
          // After a failed fsync Linux may report the next one as fine although pages were lost.
          if (this.syncFailure) throw this.syncFailure
          await (this.fh as FileHandle).sync()
        } catch (err) {
          if (!isWriteError(err)) throw err
          this.toMemory(err, false)
        }
      }
      let committed = false
      if (admitted && this.mode === 'disk') {
        try {
          await this.hooks.commit(this.tmpPath, this.written)
          committed = true
        } catch (err) {
          if (!isWriteError(err)) throw err
          // The bytes are verified and the open handle still reads them: serve, do not keep.
          this.toMemory(err, false)
        }
      }
      if (!committed) {
        this.kept = false
        // Readers still hold the handle, the name can go now.
        await unlink(this.tmpPath).catch(() => {})
        this.hooks.abandon(this.size)
      }
      this.state = 'done'
      this.emit('change')
      this.resolveFinished()
    } catch (err) {
      this.current?.abort()
      const e = isRegmirrorError(err)
        ? err
        : new RegmirrorError('UPSTREAM_ERROR', 'blob download failed', { cause: err, detail: { digest: this.digest.value } })
      this.error = e
      this.state = 'failed'
      this.kept = false
      if (admitted) this.hooks.abandon(this.size)
      await unlink(this.tmpPath).catch(() => {})
      if (!this.orphaned && !this.cancelled) this.hooks.onFailed?.(e)
      this.rejectReady(e)
      this.emit('change')
      this.rejectFinished(e)
    } finally {
      this.unref()
    }
  }

  /**
   * Gives up the download (shutdown): readers are destroyed, the temp file is removed and
   * nothing is committed. Resolves `finished` (rejected) soon after.
   */
  cancel(): void {
    if (this.state === 'done' || this.state === 'failed' || this.cancelled) return
    this.cancelled = true
    this.current?.abort()
    this.emit('advance')
  }

  private async openTemp(): Promise<void> {
    try {
      this.fh = await this.openFile(this.tmpPath)
    } catch (err) {
      if (!isWriteError(err)) throw err
      this.toMemory(err)
    }
  }

  /**
   * Stops writing to disk; what is on disk stays readable, the rest goes through the window.
   * `err`: the write error that forced it (reported), or undefined when the blob is not kept.
   */
  private toMemory(err: NodeJS.ErrnoException | undefined, report = true): void {
    if (this.mode === 'memory') return
    this.mode = 'memory'
    this.kept = false
    this.winStart = this.diskEnd
    if (err && report) this.hooks.onWriteError?.(err, this.diskEnd)
    if (this.refs <= 1 && this.state === 'running') this.orphaned = true
  }

  /**
   * Whether a new client can still read this fill from its first byte: always on disk; in
   * memory mode only while the window still holds everything past what is on disk.
   */
  joinable(): boolean {
    return this.mode === 'disk' || this.winStart === this.diskEnd
  }

  /** Unknown size: whether `bytes` more may come, reserving room on disk in steps as the file grows. */
  private async roomFor(bytes: number): Promise<boolean> {
    if (this.mode === 'memory') return this.written + bytes <= this.maxUnsized
    const need = this.diskEnd + bytes - this.granted
    const more = this.hooks.reserveMore
    if (need <= 0 || !more) return true
    for (const ask of need < RESERVE_STEP ? [RESERVE_STEP, need] : [need]) {
      if (await more(ask)) {
        this.granted += ask
        return true
      }
    }
    return false
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
    for await (const chunk of current.body) {
      const buf = chunk instanceof Buffer ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      if (this.size !== undefined && this.written + buf.length > this.size) {
        throw new RegmirrorError('SIZE_MISMATCH', 'upstream sent more bytes than it announced', {
          detail: { digest: this.digest.value, expected: this.size },
        })
      }
      hash.update(buf)
      let off = 0
      if (this.size === undefined && !(await this.roomFor(buf.length))) {
        // Nothing bounds a body of unknown size but the room to verify and keep it.
        throw new RegmirrorError('BLOB_SIZE_UNKNOWN', 'upstream sent a blob of unannounced size larger than the cache can hold', {
          detail: { digest: this.digest.value, received: this.written },
        })
      }
      if (this.mode === 'disk') {
        try {
          while (off < buf.length) {
            const { bytesWritten } = await (this.fh as FileHandle).write(buf, off, buf.length - off, this.diskEnd)
            off += bytesWritten
            this.diskEnd += bytesWritten
          }
          this.syncAhead()
        } catch (err) {
          if (!isWriteError(err)) throw err
          this.toMemory(err)
        }
      }
      if (off < buf.length) {
        // Copied: undici may reuse the chunk's memory.
        this.window.push(Buffer.from(buf.subarray(off)))
        this.winBytes += buf.length - off
      }
      this.written += buf.length
      this.emit('change')
      if (this.mode === 'memory') await this.waitForRoom()
      if (this.orphaned) throw new RegmirrorError('CACHE_IO', 'no reader left for an uncached download')
      if (this.cancelled) throw cancelledError()
    }
  }

  /** Starts a datasync of what is written so far, one at a time, without waiting for it. */
  private syncAhead(): void {
    if (this.syncing || this.syncFailure || this.diskEnd - this.syncedTo < SYNC_EVERY) return
    const to = this.diskEnd
    this.syncing = (this.fh as FileHandle)
      .datasync()
      .then(
        () => void (this.syncedTo = to),
        (err: NodeJS.ErrnoException) => void (this.syncFailure = err),
      )
      .finally(() => (this.syncing = undefined))
  }

  /** Memory mode: the download waits for the slowest reader, so the window stays bounded. */
  private async waitForRoom(): Promise<void> {
    this.trimWindow()
    while (this.winBytes > this.memoryWindow && !this.orphaned && !this.cancelled) {
      await new Promise<void>((resolve) => this.once('advance', resolve))
      this.trimWindow()
    }
  }

  private trimWindow(): void {
    // A request that holds the fill but has not opened its reader yet still needs every byte.
    if (this.readerPos.size === 0) return
    let min = this.written
    for (const r of this.readerPos) min = Math.min(min, r.pos)
    while (this.window.length > 0 && this.winStart + (this.window[0] as Buffer).length <= min) {
      const first = this.window.shift() as Buffer
      this.winStart += first.length
      this.winBytes -= first.length
    }
  }

  /** Copies bytes [pos, pos+len) from the memory window into `buf`; returns how many. */
  private readWindow(buf: Buffer, pos: number, len: number): number {
    let at = this.winStart
    let n = 0
    for (const c of this.window) {
      if (n >= len) break
      const cEnd = at + c.length
      if (cEnd > pos + n) {
        const from = pos + n - at
        n += c.copy(buf, n, from, Math.min(c.length, from + (len - n)))
      }
      at = cEnd
    }
    return n
  }

  /**
   * A client's hold on the fill until it opens its reader or lets go: keeps the file open, and
   * in memory mode keeps the window from being trimmed past what a reader from byte 0 needs.
   */
  attach(): { open(start: number, end: number): Readable; release(): void } {
    const release = this.retain()
    const mark = { pos: this.winStart }
    this.readerPos.add(mark)
    let held = true
    const drop = () => {
      if (!held) return
      held = false
      this.readerPos.delete(mark)
      this.emit('advance')
    }
    return {
      open: (start, end) => {
        const reader = this.createReader(start, end)
        drop()
        return reader
      },
      release: () => {
        drop()
        release()
      },
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
      this.window = []
      this.winBytes = 0
    } else if (this.refs === 1 && this.mode === 'memory' && this.state === 'running') {
      // Only the download itself is left: uncached bytes no one reads are not worth fetching.
      this.orphaned = true
      this.current?.abort()
      this.emit('advance')
    }
  }

  /**
   * A reader of bytes [start, end] (inclusive). Call after `ready` resolved. It reads what
   * is on disk, waits for more, and ends only once the fill is verified.
   */
  createReader(start: number, end: number): Readable {
    if (this.refs === 0) throw new RegmirrorError('INTERNAL', 'reader created after the fill closed its file')
    const release = this.retain()
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const fill = this
    let pos = start
    const mark = { pos: start }
    this.readerPos.add(mark)
    let pumping = false
    let waiting: (() => void) | undefined
    const stream = new Readable({
      highWaterMark: CHUNK,
      read() {
        void pump()
      },
      destroy(err, cb) {
        if (waiting) fill.off('change', waiting)
        fill.readerPos.delete(mark)
        fill.emit('advance')
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
          // Once done the blob's real end is known, also where the upstream never said its size.
          const last = done ? Math.min(end, fill.written - 1) : end
          if (pos > last) {
            if (done) {
              stream.push(null)
              fill.readerPos.delete(mark)
              release()
              return
            }
          } else {
            // Everything but the final byte may go before verification.
            const limit = done ? last + 1 : Math.min(fill.written, last)
            if (pos < limit) {
              let len = Math.min(CHUNK, limit - pos)
              const onDisk = pos < fill.diskEnd
              if (onDisk) len = Math.min(len, fill.diskEnd - pos)
              const buf = Buffer.allocUnsafe(len)
              const bytesRead = onDisk ? (await (fill.fh as FileHandle).read(buf, 0, len, pos)).bytesRead : fill.readWindow(buf, pos, len)
              if (stream.destroyed) return
              if (bytesRead === 0) throw new RegmirrorError('CACHE_IO', 'temp file shorter than written')
              pos += bytesRead
              mark.pos = pos
              if (fill.mode === 'memory') fill.emit('advance')
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

function cancelledError(): RegmirrorError {
  return new RegmirrorError('UNAVAILABLE', 'the mirror is shutting down')
}

const WRITE_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'EMFILE', 'ENFILE'])

/** A failure of the cache disk, as opposed to the upstream: the fill can go on uncached. */
export function isWriteError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && WRITE_ERRORS.has(code)
}
