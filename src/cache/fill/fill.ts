import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Readable } from 'node:stream'
import { RegmirrorError, isRegmirrorError, isWriteError } from '../../errors.js'
import type { Digest } from '../../oci/reference.js'
import { Download, type FillSource } from './download.js'
import { openReader, type FillView, type Mark } from './readers.js'
import { Spool } from './spool.js'
import { TempFile } from './temp-file.js'
import { MemoryWindow } from './window.js'

import type { FillHooks, FillOptions, FillState } from './types.js'

export type { FillBody, FillSource } from './download.js'
export type { FillCache, FillEvents, FillHooks, FillOptions, FillState } from './types.js'

const MEMORY_WINDOW = 4 * 1024 * 1024
// The largest read from the temp file into a fresh buffer, for readers behind the tail.
const READ_CHUNK = 256 * 1024
// Room for a blob of unknown size is reserved in steps of this much as it downloads.
const RESERVE_STEP = 16 * 1024 * 1024
/** sha256 of nothing: the one digest whose content is empty. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

/**
 * One download of one digest (docs/architecture.md, "A blob miss"), made of parts with one job
 * each: the Download brings the bytes (resuming broken transfers), the TempFile keeps them (and
 * flushes), the MemoryWindow holds what is not on disk, readers (readers.ts) follow the fill and
 * hold their last byte until it is verified, and the FillCache (admission.ts) decides whether
 * the blob is kept. This class runs them in order: open, admit, receive and hash, verify, sync,
 * commit; and tracks who still needs the fill (references, reader positions).
 *
 * A fill that is not kept, or whose temp file cannot be written (ENOSPC, EACCES, EROFS), goes on
 * in memory mode: bytes past those on disk go through the bounded window that the slowest reader
 * drains, nothing is cached, and the download stops once no one reads it.
 */
export class Fill extends EventEmitter<{ change: []; advance: [] }> implements FillView {
  state: FillState = 'starting'
  size: number | undefined
  written = 0
  error: RegmirrorError | undefined
  kept = false
  /** 'memory' once the temp file is not written: nothing will be cached. */
  mode: 'disk' | 'memory' = 'disk'
  /** When the download started (ms since the epoch): the status page's rate over its first seconds. */
  readonly startedAt = Date.now()
  readonly ready: Promise<number | undefined>
  readonly finished: Promise<void>
  private readonly file: TempFile
  private readonly window = new MemoryWindow()
  /** Disk mode: received bytes on their way to the temp file, the newest kept for readers (spool.ts). */
  private readonly spool: Spool
  private readonly download: Download
  /** Aborted when the fill gives up: on shutdown (cancel) or with no reader left for an uncached download. */
  private readonly stop = new AbortController()
  /** Where each reader (and each client about to open one) still needs bytes from. */
  private readonly marks = new Set<Mark>()
  private readonly memoryWindow: number
  private readonly maxUnsized: number
  /** Unknown size: how far the temp file may grow on what reserveMore granted so far. */
  private granted = 0
  private refs = 1
  private settle!: {
    ready: (size: number | undefined) => void
    failReady: (e: unknown) => void
    done: () => void
    fail: (e: unknown) => void
  }

  constructor(
    readonly digest: Digest,
    tmpPath: string,
    source: FillSource,
    private readonly hooks: FillHooks,
    resumeAttempts: number,
    opts: FillOptions = {},
  ) {
    super()
    this.setMaxListeners(0)
    this.file = new TempFile(tmpPath, opts.openFile)
    this.spool = new Spool(this.file, (err) => this.toMemory(err))
    this.memoryWindow = opts.memoryWindow ?? MEMORY_WINDOW
    this.maxUnsized = opts.maxUnsized ?? Number.MAX_SAFE_INTEGER
    this.download = new Download(digest.value, source, resumeAttempts, this.stop.signal, hooks.onResume)
    const settle: Partial<typeof this.settle> = {}
    this.ready = new Promise((res, rej) => Object.assign(settle, { ready: res, failReady: rej }))
    this.finished = new Promise((res, rej) => Object.assign(settle, { done: res, fail: rej }))
    this.settle = settle as typeof this.settle
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
      await this.download.open()
      this.size = this.download.size
      // No bytes to hold back: an empty body is complete at once, so it must be decided now.
      if (this.size === 0 && this.digest.hex !== EMPTY_SHA256) {
        throw new RegmirrorError('DIGEST_MISMATCH', 'upstream sent an empty body for a blob that is not empty', {
          detail: { digest: this.digest.value },
        })
      }
      admitted = await this.hooks.admit(this.size)
      if (admitted) await this.openTemp()
      // Not kept: nothing goes to disk (the cache's cap bounds tmp/ too); readers share the window.
      else this.toMemory(undefined)
      this.kept = admitted && this.mode === 'disk'
      this.state = 'running'
      this.settle.ready(this.size)
      this.emit('change')
      this.verify(await this.receive())
      await this.keep(admitted)
      this.state = 'done'
      this.emit('change')
      this.settle.done()
    } catch (err) {
      await this.fail(err, admitted)
    } finally {
      this.unref()
    }
  }

  /** Takes every byte from the download into the file (or the window); returns the sha256. */
  private async receive(): Promise<string> {
    const hash = createHash('sha256')
    for await (const buf of this.download.chunks()) {
      if (this.size === undefined && !(await this.roomFor(buf.length))) {
        // Nothing bounds a body of unknown size but the room to verify and keep it.
        throw new RegmirrorError('BLOB_SIZE_UNKNOWN', 'upstream sent a blob of unannounced size larger than the cache can hold', {
          detail: { digest: this.digest.value, received: this.written },
        })
      }
      hash.update(buf)
      await this.store(buf)
      this.written += buf.length
      this.emit('change')
      if (this.mode === 'memory') await this.waitForRoom()
      this.stop.signal.throwIfAborted()
    }
    if (this.mode === 'disk') await this.spool.flush(true)
    return hash.digest('hex')
  }

  private verify(actual: string): void {
    if (this.size !== undefined && this.written !== this.size) {
      throw new RegmirrorError('SIZE_MISMATCH', 'upstream sent fewer bytes than it announced', {
        detail: { digest: this.digest.value, expected: this.size, received: this.written },
      })
    }
    if (actual !== this.digest.hex) {
      throw new RegmirrorError('DIGEST_MISMATCH', 'upstream content does not match its digest', {
        detail: { digest: this.digest.value, actual: `sha256:${actual}` },
      })
    }
    this.size = this.written
  }

  /** Verified: made durable and committed when admitted and on disk; else the name goes and the room is given back. */
  private async keep(admitted: boolean): Promise<void> {
    let committed = false
    try {
      if (this.mode === 'disk') await this.file.sync()
      if (admitted && this.mode === 'disk') {
        await this.hooks.commit(this.file.path, this.written)
        committed = true
      }
    } catch (err) {
      if (!isWriteError(err)) throw err
      // The bytes are verified and the open handle still reads them: serve, do not keep.
      this.toMemory(err, false)
    }
    if (!committed) {
      this.kept = false
      // Readers still hold the handle, the name can go now.
      await this.file.unlink()
      this.hooks.abandon(this.size)
    }
  }

  private async fail(err: unknown, admitted: boolean): Promise<void> {
    this.download.abort()
    // Given up on purpose: the reason says why (shutdown, no reader left), not the body's abort.
    const cause = this.stop.signal.aborted ? this.stop.signal.reason : err
    const e = isRegmirrorError(cause)
      ? cause
      : new RegmirrorError('UPSTREAM_ERROR', 'blob download failed', { cause, detail: { digest: this.digest.value } })
    this.error = e
    this.state = 'failed'
    this.kept = false
    if (admitted) this.hooks.abandon(this.size)
    await this.file.unlink()
    if (!this.stop.signal.aborted) this.hooks.onFailed?.(e)
    this.settle.failReady(e)
    this.emit('change')
    this.settle.fail(e)
  }

  /** Gives up the download (shutdown): readers are destroyed, the temp file is removed, nothing is committed. */
  cancel(): void {
    if (this.state === 'done' || this.state === 'failed' || this.stop.signal.aborted) return
    this.stop.abort(new RegmirrorError('UNAVAILABLE', 'the mirror is shutting down'))
    this.emit('advance')
  }

  private orphan(): void {
    if (this.stop.signal.aborted) return
    this.stop.abort(new RegmirrorError('CACHE_IO', 'no reader left for an uncached download'))
    this.emit('advance')
  }

  private async openTemp(): Promise<void> {
    try {
      await this.file.open()
    } catch (err) {
      if (!isWriteError(err)) throw err
      this.toMemory(err)
    }
  }

  private async store(buf: Buffer): Promise<void> {
    if (this.mode === 'memory') return this.window.push(buf)
    await this.spool.append(buf)
  }

  /**
   * Stops writing to disk; what is on disk stays readable, the rest goes through the window.
   * `err`: the write error that forced it (reported), or undefined when the blob is not kept.
   */
  private toMemory(err: NodeJS.ErrnoException | undefined, report = true): void {
    if (this.mode === 'memory') return
    this.mode = 'memory'
    this.kept = false
    this.window.reset(this.file.end)
    // What the spool holds past the file's end is not on disk: the window serves it from now on.
    this.spool.takeUnwritten((buf) => this.window.push(buf))
    if (err && report) this.hooks.onWriteError?.(err, this.file.end)
    if (this.refs <= 1 && this.state === 'running') this.orphan()
  }

  /**
   * Whether a new client can still read this fill from its first byte: always on disk; in
   * memory mode only while the window still holds everything past what is on disk.
   */
  joinable(): boolean {
    return this.mode === 'disk' || this.window.start === this.file.end
  }

  /** Unknown size: whether `bytes` more may come, reserving room on disk in steps as the file grows. */
  private async roomFor(bytes: number): Promise<boolean> {
    if (this.mode === 'memory') return this.written + bytes <= this.maxUnsized
    // `written`, not the file's end: the tail's bytes are on their way to the file.
    const need = this.written + bytes - this.granted
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

  /** Memory mode: the download waits for the slowest reader, so the window stays bounded. */
  private async waitForRoom(): Promise<void> {
    this.trimWindow()
    while (this.window.bytes > this.memoryWindow && !this.stop.signal.aborted) {
      await new Promise<void>((resolve) => this.once('advance', resolve))
      this.trimWindow()
    }
  }

  private trimWindow(): void {
    // A client that holds the fill but has not opened its reader yet has a mark too.
    if (this.marks.size === 0) return
    let min = this.written
    for (const m of this.marks) min = Math.min(min, m.pos)
    this.window.trim(min)
  }

  /** Bytes in the temp file (≤ written: the newest may still be in the spool): what another process may read of it. */
  get onDisk(): number {
    return this.file.end
  }

  // --- what readers see (FillView) ---

  async read(pos: number, len: number): Promise<Buffer> {
    const view = this.mode === 'disk' ? this.spool.tail.view(pos, len) : undefined
    if (view) return view
    if (pos >= this.file.end) {
      const buf = Buffer.allocUnsafe(Math.min(len, READ_CHUNK))
      return buf.subarray(0, this.window.read(buf, pos, buf.length))
    }
    const buf = Buffer.allocUnsafe(Math.min(len, READ_CHUNK, this.file.end - pos))
    return buf.subarray(0, await this.file.read(buf, pos, buf.length))
  }

  changed(): { promise: Promise<void>; cancel(): void } {
    let listener = () => {}
    const promise = new Promise<void>((resolve) => {
      listener = resolve
      this.once('change', listener)
    })
    return { promise, cancel: () => this.off('change', listener) }
  }

  advanced(): void {
    if (this.mode === 'memory') this.emit('advance')
  }

  // --- who still needs the fill ---

  /** Clients reading this fill, or holding it to read (the status page's "clients attached"). */
  get clients(): number {
    return this.marks.size
  }

  /**
   * A client's hold on the fill until it opens its reader or lets go: keeps the file open, and
   * in memory mode keeps the window from being trimmed past what a reader from byte 0 needs.
   */
  attach(): { open(start: number, end: number): Readable; release(): void } {
    const release = this.retain()
    const mark = { pos: this.window.start }
    this.marks.add(mark)
    const drop = () => {
      if (this.marks.delete(mark)) this.advanced()
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
      if (released) return
      released = true
      this.unref()
    }
  }

  private unref(): void {
    if (--this.refs === 0) {
      void this.file.close()
      this.window.clear()
      this.spool.tail.reset(0)
    } else if (this.refs === 1 && this.mode === 'memory' && this.state === 'running') {
      // Only the download itself is left: uncached bytes no one reads are not worth fetching.
      this.orphan()
    }
  }

  /** A reader of bytes [start, end] (inclusive); see readers.ts. Call after `ready` resolved. */
  createReader(start: number, end: number): Readable {
    if (this.refs === 0) throw new RegmirrorError('INTERNAL', 'reader created after the fill closed its file')
    const release = this.retain()
    const mark = { pos: start }
    this.marks.add(mark)
    return openReader(this, start, end, mark, () => {
      this.marks.delete(mark)
      release()
    })
  }
}
