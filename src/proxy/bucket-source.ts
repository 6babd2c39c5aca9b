import type { FillBody, FillSource } from '../cache/fill/fill.js'
import type { Digest } from '../oci/reference.js'
import type { Bucket } from '../storage/bucket.js'

/**
 * A blob from the bucket tier into the hot tier (storage.backend: s3): the same fill verifies the digest
 * again, so nothing unverified is served even from a bucket someone else wrote to. When the bucket fails
 * before or during the body (it is then set aside, storage/bucket.ts), the bytes come from `fallback` (the
 * upstream) instead, from the byte reached: the fill resumes through open(offset).
 */
export class BucketBlobSource implements FillSource {
  private useBucket = true

  constructor(
    private readonly bucket: Bucket,
    private readonly digest: Digest,
    private readonly fallback: FillSource,
  ) {}

  /** Whether the bytes came from the bucket alone (else the upstream took over). */
  get fromBucket(): boolean {
    return this.useBucket
  }

  async open(offset: number): Promise<FillBody> {
    if (this.useBucket && this.bucket.up) {
      try {
        const { body, total } = await this.bucket.read(this.digest, offset)
        return { body, total, abort: () => body.destroy() }
      } catch {
        // Reported by the bucket; the pull goes on from upstream.
      }
    }
    this.useBucket = false
    return this.fallback.open(offset)
  }
}
