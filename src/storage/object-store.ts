import type { Readable } from 'node:stream'
import type { Digest } from '../oci/reference.js'

/**
 * The one interface the rest of regmirror uses for object storage (the bucket tier, `storage.backend: s3`).
 * Every object holds verified content under a key named by its digest (`<prefix>/blobs/sha256/<hex>`): an
 * upload becomes visible only on complete(), which the caller calls only once the fill it reads verified the
 * digest. s3-store.ts implements it over the AWS SDK; nothing else knows the SDK.
 */
export interface ObjectStore {
  /** Creates the bucket when it does not exist. */
  init(): Promise<void>
  /** The object's size, undefined when there is none. */
  head(d: Digest): Promise<{ size: number } | undefined>
  /** Bytes [start, end] (inclusive; default the whole object); `total` is the object's whole size. */
  get(d: Digest, range?: { start: number; end?: number }): Promise<{ body: Readable; total: number }>
  delete(d: Digest): Promise<void>
  /** Every object under the prefix that is named like a blob. */
  list(): AsyncIterable<StoredObject>
  /** A URL anyone holding it may GET (Range included) for `expirySec` seconds. */
  presign(d: Digest, expirySec: number): Promise<string>
  /** A multipart upload of `d` to its key; nothing is visible until complete(). */
  upload(d: Digest): Upload
  /** Aborts multipart uploads under the prefix started before `olderThan` (abandoned by a crash); returns how many. */
  abortStaleUploads(olderThan: Date): Promise<number>
  close(): void
}

export interface StoredObject {
  digest: string
  size: number
  lastModified: Date
}

/** One object being written; memory holds at most one part of it (parts.ts). */
export interface Upload {
  /** Resolves once the chunk is buffered or its part sent: the caller waits before writing more. */
  write(chunk: Buffer): Promise<void>
  /** Makes the object visible. Call only for verified bytes. */
  complete(): Promise<void>
  /** Discards everything sent; never throws. */
  abort(): Promise<void>
}
