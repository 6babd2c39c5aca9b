import { RegmirrorError, isRegmirrorError } from '../../errors.js'

/** One opened upstream body: from `offset` to the end of the blob. */
export interface FillBody {
  body: AsyncIterable<Uint8Array>
  /** The whole blob's size when the upstream said it (Content-Length or Content-Range). */
  total: number | undefined
  /** Stops the upstream body (on failure or when abandoning an attempt). */
  abort(): void
}

/** Where a fill's bytes come from: an upstream, later other endpoints, peers or an archive. */
export interface FillSource {
  /** Opens the body from `offset` (0, or where a broken download stopped). */
  open(offset: number): Promise<FillBody>
}

/**
 * The bytes of one blob from a source, as one stream however often the transfer breaks: a body
 * that breaks off is opened again at the byte reached (Range) and the stream goes on. Resume
 * attempts are counted without progress: one that moved the download forward resets the count,
 * so a lossy link that breaks every few megabytes still completes a large blob, while a source
 * that keeps failing at the same byte gives up after `resumeAttempts`. Only a broken transfer is
 * resumed: a body longer than announced, or a size that changes between attempts, is wrong
 * content (SIZE_MISMATCH) and final.
 */
export class Download {
  /** The blob's size as the source announced it. */
  size: number | undefined
  /** Bytes handed out so far. */
  received = 0
  private current: FillBody | undefined

  constructor(
    /** The digest, for error details. */
    private readonly digest: string,
    private readonly source: FillSource,
    private readonly resumeAttempts: number,
    /** Aborted when the fill gives up (shutdown, no reader left): stops the body, no more resumes. */
    private readonly stop: AbortSignal,
    private readonly onResume?: (offset: number, attempt: number, err: unknown) => void,
  ) {
    stop.addEventListener('abort', () => this.current?.abort(), { once: true })
  }

  /** Opens the body from byte 0; resolves once the source answered (the size is known then, if it is given). */
  async open(): Promise<void> {
    this.current = await this.source.open(0)
    this.stop.throwIfAborted()
    this.size = this.current.total
  }

  abort(): void {
    this.current?.abort()
  }

  /** The body's chunks from where the last one ended to the end of the blob. Call open() first. */
  async *chunks(): AsyncGenerator<Buffer> {
    let attempt = 0
    let complete = false
    try {
      for (;;) {
        const before = this.received
        try {
          yield* this.drain(this.current as FillBody)
          complete = true
          return
        } catch (failure) {
          this.current?.abort()
          if (this.stop.aborted || isRegmirrorError(failure, 'SIZE_MISMATCH') || this.size === undefined) throw failure
          // The connection broke after the last announced byte arrived: there is nothing left to ask
          // for (a Range past the end is a 416), and the digest check decides.
          if (this.received === this.size) {
            complete = true
            return
          }
          if (this.received > before) attempt = 0
          attempt = await this.reopen(attempt, failure)
        }
      }
    } finally {
      // The consumer stopped early (it failed, or was told to stop): the body is not needed.
      if (!complete) this.current?.abort()
    }
  }

  private async *drain(current: FillBody): AsyncGenerator<Buffer> {
    for await (const chunk of current.body) {
      const buf = chunk instanceof Buffer ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      if (this.size !== undefined && this.received + buf.length > this.size) {
        throw new RegmirrorError('SIZE_MISMATCH', 'upstream sent more bytes than it announced', {
          detail: { digest: this.digest, expected: this.size },
        })
      }
      this.received += buf.length
      yield buf
    }
  }

  /** Opens the body again at the byte reached; returns the attempt count it took. */
  private async reopen(attempt: number, failure: unknown): Promise<number> {
    let err = failure
    for (;;) {
      if (attempt >= this.resumeAttempts) throw err
      attempt++
      this.onResume?.(this.received, attempt, err)
      try {
        const next = await this.source.open(this.received)
        this.current = next
        this.stop.throwIfAborted()
        if (next.total !== undefined && next.total !== this.size) {
          throw new RegmirrorError('SIZE_MISMATCH', 'upstream changed the blob size between attempts', { detail: { digest: this.digest } })
        }
        return attempt
      } catch (e) {
        if (this.stop.aborted || isRegmirrorError(e, 'SIZE_MISMATCH')) throw e
        err = e
      }
    }
  }
}
