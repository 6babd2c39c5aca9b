import type { Readable } from 'node:stream'
import type { Config } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { Digest } from '../oci/reference.js'
import type { BucketTier } from './bucket-tier.js'
import type { ObjectStore } from './object-store.js'

type S3Settings = Config['storage']['s3']

/** Abandoned multipart uploads (a replica killed mid-upload) older than this are aborted. */
const STALE_UPLOAD = 6 * 3600_000
const STALE_SWEEP = 3600_000

/**
 * The bucket tier as the services see it: object storage behind a health state. A failure (not a 404) is
 * counted (`regmirror_storage_errors_total{op}`), logged without secrets, and sets the bucket aside for
 * `offline.coolDown`: meanwhile it is not asked, pulls go on from the hot tier and upstream, and what is
 * fetched is streamed and not kept in the bucket. After the cool-down the next request tries it again.
 */
export class Bucket {
  private downUntil = 0
  private sweep: NodeJS.Timeout | undefined
  private readonly pending = new Set<Promise<unknown>>()
  /** The bound and its eviction (`storage.s3.maxSize`, bucket-tier.ts), when set: told of every access and commit. */
  tier: BucketTier | undefined

  constructor(
    private readonly store: ObjectStore,
    private readonly s3: S3Settings,
    private readonly coolDownMs: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly staleAfterMs = STALE_UPLOAD,
  ) {}

  /** `storage.s3.redirect`: blob GETs the hot tier misses are answered with a presigned URL. */
  get redirects(): boolean {
    return this.s3.redirect
  }

  /** Whether the bucket is used now (not set aside after a failure). */
  get up(): boolean {
    return Date.now() >= this.downUntil
  }

  /** Creates the bucket if missing and clears abandoned uploads, now and every hour; a failure is reported, not thrown. */
  async start(): Promise<void> {
    try {
      await this.store.init()
      await this.sweepUploads()
    } catch (err) {
      this.failed('init', err)
    }
    this.sweep = setInterval(() => void this.sweepUploads().catch((err: unknown) => this.failed('cleanup', err)), STALE_SWEEP)
    this.sweep.unref()
    this.tier?.start()
  }

  async sweepUploads(): Promise<number> {
    const n = await this.store.abortStaleUploads(new Date(Date.now() - this.staleAfterMs))
    if (n > 0) this.log.info({ aborted: n }, 'aborted abandoned multipart uploads in object storage')
    return n
  }

  /** Waits for the uploads in progress (their fills are done or cancelled by then, so they end), then closes. */
  async stop(): Promise<void> {
    clearInterval(this.sweep)
    await this.tier?.stop()
    await Promise.allSettled([...this.pending])
    this.store.close()
  }

  /** The blob's size in the bucket; undefined when absent, or when the bucket is set aside or fails. */
  async lookup(d: Digest): Promise<number | undefined> {
    if (!this.up) return undefined
    try {
      const size = (await this.store.head(d))?.size
      // Recorded before the object is read or a client is sent to it: eviction spares what was just looked up.
      if (size !== undefined) this.tier?.touched(d.value)
      return size
    } catch (err) {
      this.failed('head', err)
      return undefined
    }
  }

  /** The blob's bytes from `offset`, for a fill (proxy/bucket-source.ts); a failure sets the bucket aside and throws. */
  async read(d: Digest, offset: number): Promise<{ body: Readable; total: number }> {
    try {
      return await this.store.get(d, offset > 0 ? { start: offset } : undefined)
    } catch (err) {
      this.failed('get', err)
      throw new RegmirrorError('STORAGE_ERROR', 'cannot read the blob from object storage', { detail: { digest: d.value } })
    }
  }

  /** A presigned GET URL of the blob (`storage.s3.redirectExpiry`); undefined when it cannot be made. */
  async presign(d: Digest): Promise<string | undefined> {
    try {
      return await this.store.presign(d, Math.round(this.s3.redirectExpiry / 1000))
    } catch (err) {
      this.failed('presign', err)
      return undefined
    }
  }

  /**
   * Uploads what `reader` gives (a reader of the blob's fill, which holds back its last byte until the fill
   * verified the digest and ends with an error otherwise): complete() at its end, abort() on any error, so
   * only verified content becomes an object. Never throws; resolves with what happened.
   */
  keep(d: Digest, reader: Readable): Promise<'stored' | 'aborted' | 'skipped'> {
    const p = this.upload(d, reader)
    this.pending.add(p)
    void p.finally(() => this.pending.delete(p))
    return p
  }

  private async upload(d: Digest, reader: Readable): Promise<'stored' | 'aborted' | 'skipped'> {
    if (!this.up) {
      reader.destroy()
      this.metrics.storageUploads.inc({ result: 'skipped' })
      return 'skipped'
    }
    const upload = this.store.upload(d)
    let storageFault = false
    try {
      for await (const chunk of reader) {
        storageFault = true
        await upload.write(chunk as Buffer)
        storageFault = false
      }
      storageFault = true
      await upload.complete()
      this.metrics.storageUploads.inc({ result: 'stored' })
      this.tier?.committed(d.value)
      return 'stored'
    } catch (err) {
      reader.destroy()
      await upload.abort()
      this.metrics.storageUploads.inc({ result: 'aborted' })
      // A fill that failed (digest mismatch, upstream gone) is the fill's to report; the bucket is fine.
      if (storageFault) this.failed('upload', err)
      else this.log.debug({ digest: d.value, err: (err as Error).message }, 'upload to object storage aborted: the fill failed')
      return 'aborted'
    }
  }

  /** Counts and logs a failure and sets the bucket aside for the cool-down. */
  failed(op: string, err: unknown): void {
    this.metrics.storageErrors.inc({ op })
    const wasUp = this.up
    this.downUntil = Date.now() + this.coolDownMs
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number }; message?: string }
    const fields = { op, error: e?.name, status: e?.$metadata?.httpStatusCode, err: this.scrub(String(e?.message ?? err)) }
    if (wasUp) this.log.warn({ ...fields, coolDownMs: this.coolDownMs }, 'object storage failed; pulls go on without it for the cool-down')
    else this.log.debug(fields, 'object storage failed again')
  }

  /** A service's message may quote the request; the key id and secret never reach the log. */
  private scrub(msg: string): string {
    let out = msg.slice(0, 300)
    for (const s of [this.s3.accessKeyId, this.s3.secretAccessKey]) if (s) out = out.split(s).join('[REDACTED]')
    return out
  }
}
