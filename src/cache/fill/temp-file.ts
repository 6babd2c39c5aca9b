import { open, unlink, type FileHandle } from 'node:fs/promises'

// Readers wait for the fsync before their last byte; flushing as the download goes leaves that
// final fsync only the tail (~30 ms instead of ~170 ms for 150 MiB on the bench machine's disk).
const SYNC_EVERY = 32 * 1024 * 1024

/**
 * A fill's temp file: written in order at its end, read at any offset by the fill's readers
 * through the same handle, flushed in the background as it grows, and made durable before the
 * fill commits it. Errors are thrown to the fill, which decides (a write error sends the fill
 * to memory; see fill.ts).
 */
export class TempFile {
  private fh: FileHandle | undefined
  /** Bytes in the file. */
  end = 0
  /** A background datasync in flight, and the first failure of one (see sync). */
  private syncing: Promise<void> | undefined
  private syncFailure: NodeJS.ErrnoException | undefined
  private syncedTo = 0

  constructor(
    readonly path: string,
    private readonly openFile: (path: string) => Promise<FileHandle> = (p) => open(p, 'w+'),
  ) {}

  async open(): Promise<void> {
    this.fh = await this.openFile(this.path)
  }

  get isOpen(): boolean {
    return this.fh !== undefined
  }

  /** Appends `buf`; on failure, `end` still counts what reached the file before it. */
  async write(buf: Buffer): Promise<void> {
    const fh = this.handle()
    let off = 0
    while (off < buf.length) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off, this.end)
      off += bytesWritten
      this.end += bytesWritten
    }
    this.syncAhead()
  }

  async read(buf: Buffer, pos: number, len: number): Promise<number> {
    return (await this.handle().read(buf, 0, len, pos)).bytesRead
  }

  /** Makes every byte durable. A background flush that failed fails this too: after a failed
   * fsync Linux may report the next one as fine although pages were lost. */
  async sync(): Promise<void> {
    await this.syncing
    if (this.syncFailure) throw this.syncFailure
    await this.handle().sync()
  }

  async close(): Promise<void> {
    const fh = this.fh
    this.fh = undefined
    await fh?.close().catch(() => {})
  }

  /** Removes the name; readers that still hold the handle go on reading. */
  async unlink(): Promise<void> {
    await unlink(this.path).catch(() => {})
  }

  /** Starts a datasync of what is written so far, one at a time, without waiting for it. */
  private syncAhead(): void {
    if (this.syncing || this.syncFailure || this.end - this.syncedTo < SYNC_EVERY) return
    const to = this.end
    this.syncing = this.handle()
      .datasync()
      .then(
        () => void (this.syncedTo = to),
        (err: NodeJS.ErrnoException) => void (this.syncFailure = err),
      )
      .finally(() => (this.syncing = undefined))
  }

  private handle(): FileHandle {
    if (!this.fh) throw Object.assign(new Error('temp file is not open'), { code: 'EBADF' })
    return this.fh
  }
}
