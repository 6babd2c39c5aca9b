import type { Readable } from 'node:stream'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/reference.js'
import type { BlobStore } from './blob-store.js'
import { Layout } from './layout.js'
import type { CacheIndex } from './lru-index.js'

/** A blob a response is about to stream: from the cache, or from a fill in progress. */
export interface BlobHandle {
  /** Undefined only when an upstream streams a blob without announcing its size. */
  size: number | undefined
  source: 'cache' | 'fill'
  /** Whether this request joined a fill another request started. */
  joined: boolean
  /** Bytes [start, end], inclusive. */
  open(start: number, end: number): Readable
  /** A cache hit's open file, for a sender that reads it itself (HTTP/2 respondWithFD); closed by release() unless open() took it. */
  readonly fd?: number
  /** A cache hit's path under the blobs directory, `<ab>/<hex>` (layout.ts), for a front server that sends the file (X-Accel-Redirect). */
  readonly underBlobs?: string
  /** `storage.s3.redirect`: the response is a 307 to this presigned URL of the bucket's object, not the bytes. */
  readonly redirect?: string
  /** Call once the response is over, so the blob may be evicted again. */
  release(): void
}

/**
 * Cache hits: a blob in the index is opened (and its size checked) before anything is answered,
 * and held in use until the response ends so eviction cannot delete it under its reader. A file
 * that is gone or changed size under the running mirror (an operator, a disk fault) is dropped
 * from the index and the damaged file removed: the caller fills it again.
 */
export class Hits {
  constructor(
    private readonly store: BlobStore,
    private readonly index: CacheIndex,
    private readonly log: Logger,
  ) {}

  async open(d: Digest): Promise<BlobHandle | undefined> {
    // Held from before the open, so eviction cannot delete the file between the open and the reads.
    const size = await this.index.hold(d.value)
    if (size === undefined) return undefined
    let fd: number
    try {
      fd = await this.store.openForRead(d, size)
    } catch (err) {
      this.index.releaseUse(d.value)
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'SIZE_CHANGED') await this.heal(d, size)
      else this.log.error({ digest: d.value, code, err: (err as Error).message }, 'cannot open a cached blob; fetching it from upstream')
      return undefined
    }
    this.index.touch(d.value)
    let opened = false
    let released = false
    return {
      size,
      source: 'cache',
      joined: false,
      fd,
      underBlobs: Layout.blobUnder(d).join('/'),
      open: (start, end) => {
        opened = true
        return this.store.readStream(fd, start, end)
      },
      release: () => {
        if (released) return
        released = true
        if (!opened) this.store.closeFd(fd)
        this.index.releaseUse(d.value)
      },
    }
  }

  /** The size of a cached blob whose file is still whole, for HEAD; undefined otherwise. */
  async size(d: Digest): Promise<number | undefined> {
    const size = await this.index.adopt(d.value)
    if (size === undefined) return undefined
    if ((await this.store.size(d)) === size) return size
    await this.heal(d, size)
    return undefined
  }

  private async heal(d: Digest, size: number): Promise<void> {
    this.log.warn({ digest: d.value, size }, 'cached blob is missing or damaged on disk; dropped from the cache, it will be fetched again')
    this.index.forget(d.value)
    await this.store.remove(d).catch(() => {})
  }
}
