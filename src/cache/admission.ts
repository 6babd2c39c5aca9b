import type { Logger } from '../log.js'
import type { Digest } from '../oci/reference.js'
import type { BlobStore } from './blob-store.js'
import type { FillCache } from './fill/fill.js'
import type { CacheIndex } from './lru-index.js'

/**
 * The cache's side of one fill: room is reserved before a byte is written (so downloads in
 * progress count against the cap), the verified file is moved into the store and indexed, and
 * whatever was reserved is given back when the blob is not kept. One object per fill, so the
 * reservation has one owner.
 */
export class Admission implements FillCache {
  private reserved = 0

  constructor(
    private readonly store: BlobStore,
    private readonly index: CacheIndex,
    private readonly digest: Digest,
    private readonly log: Logger,
  ) {}

  async admit(size: number | undefined): Promise<boolean> {
    // Unknown size: room is reserved as the file grows (reserveMore).
    if (size === undefined) return true
    const ok = await this.index.reserve(size)
    if (ok) this.reserved = size
    else {
      this.log.info(
        { digest: this.digest.value, size, maxSize: this.index.maxSize },
        'no room in the cache (larger than it, or the rest is pinned or in use); streaming the blob through without keeping it',
      )
    }
    return ok
  }

  async reserveMore(bytes: number): Promise<boolean> {
    const ok = await this.index.reserve(bytes)
    if (ok) this.reserved += bytes
    return ok
  }

  async commit(tmpPath: string, size: number): Promise<void> {
    await this.store.commit(tmpPath, this.digest)
    // The index takes the blob's real size and releases the whole reservation (which, for a
    // blob of unknown size, was made in steps and may be larger).
    await this.index.add(this.digest.value, size, this.reserved)
    this.reserved = 0
  }

  abandon(): void {
    this.index.release(this.reserved)
    this.reserved = 0
  }
}
