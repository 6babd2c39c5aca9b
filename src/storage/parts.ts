import { RegmirrorError } from '../errors.js'
import type { Upload } from './object-store.js'

/** S3's smallest part but the last. */
export const MIN_PART = 5 * 1024 * 1024

/** What parts.ts needs of the service: a seam the unit tests record calls on. */
export interface PartSink {
  /** Starts a multipart upload; returns its id. */
  create(): Promise<string>
  /** Sends part `n` (from 1); returns its ETag. */
  part(uploadId: string, n: number, body: Buffer): Promise<string>
  complete(uploadId: string, parts: { n: number; etag: string }[]): Promise<void>
  abort(uploadId: string): Promise<void>
  /** The whole object in one request, for an object smaller than a part. */
  put(body: Buffer): Promise<void>
}

/**
 * An upload split into parts of `partSize` (at least MIN_PART): chunks are copied into one buffer of that size,
 * and a full buffer is sent before write() resolves, so an upload never holds more than one part in memory.
 * A blob smaller than one part is one PUT at complete(), and the multipart upload is created only for a larger
 * one. Any failure aborts what was sent; after an abort or a failure, nothing can complete.
 */
export class PartUpload implements Upload {
  private buf: Buffer | undefined
  private fill = 0
  private uploadId: Promise<string> | undefined
  private readonly sent: { n: number; etag: string }[] = []
  private state: 'open' | 'completing' | 'done' | 'aborted' = 'open'

  constructor(
    private readonly sink: PartSink,
    private readonly partSize = MIN_PART,
  ) {
    if (partSize < MIN_PART) throw new RegmirrorError('INTERNAL', `a part is at least ${MIN_PART} bytes`)
  }

  async write(chunk: Buffer): Promise<void> {
    this.check('open')
    let at = 0
    while (at < chunk.length) {
      this.buf ??= Buffer.allocUnsafe(this.partSize)
      const n = chunk.copy(this.buf, this.fill, at)
      this.fill += n
      at += n
      if (this.fill === this.partSize) await this.guard(() => this.sendPart())
    }
  }

  async complete(): Promise<void> {
    this.check('open')
    this.state = 'completing'
    await this.guard(async () => {
      if (this.uploadId === undefined) {
        await this.sink.put(this.take())
      } else {
        if (this.fill > 0) await this.sendPart()
        await this.sink.complete(await this.uploadId, this.sent)
      }
    })
    this.state = 'done'
  }

  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return
    this.state = 'aborted'
    this.buf = undefined
    const id = this.uploadId
    this.uploadId = undefined
    if (id) await id.then((u) => this.sink.abort(u)).catch(() => {})
  }

  /** Bytes held in memory (the unit tests' bound). */
  get buffered(): number {
    return this.buf?.length ?? 0
  }

  private async sendPart(): Promise<void> {
    this.uploadId ??= this.sink.create()
    const id = await this.uploadId
    const n = this.sent.length + 1
    const body = this.take()
    const etag = await this.sink.part(id, n, body)
    if (this.state === 'aborted') return
    this.sent.push({ n, etag })
  }

  private take(): Buffer {
    const body = (this.buf ?? Buffer.alloc(0)).subarray(0, this.fill)
    // The next part gets a buffer of its own: the SDK may still hold this one.
    this.buf = undefined
    this.fill = 0
    return body
  }

  private async guard(fn: () => Promise<void>): Promise<void> {
    try {
      await fn()
    } catch (err) {
      await this.abort()
      throw err
    }
    this.check(this.state === 'completing' ? 'completing' : 'open')
  }

  private check(want: 'open' | 'completing'): void {
    if (this.state !== want) throw new RegmirrorError('STORAGE_ERROR', `upload is ${this.state}`)
  }
}
