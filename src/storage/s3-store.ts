/**
 * The ObjectStore over `@aws-sdk/client-s3` (imported lazily by open.ts: a filesystem-only mirror never loads
 * it). The SDK was chosen for its explicit multipart calls (an upload of bytes that failed verification is
 * aborted, never completed), its presigner and its upkeep; it signs for any S3-compatible service.
 *
 * Bucket layout, under `storage.s3.prefix`:
 *   <prefix>/blobs/sha256/<64 hex>   verified blob content; the key is its digest (no manifests, no metadata)
 * Multipart uploads in progress are under the same keys; abortStaleUploads clears the abandoned ones.
 */
import { readFileSync } from 'node:fs'
import { Agent } from 'node:https'
import type { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import type { Config } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { Digest } from '../oci/reference.js'
import type { ObjectStore, StoredObject, Upload } from './object-store.js'
import { PartUpload, type PartSink } from './parts.js'

type S3Settings = Config['storage']['s3']

const BLOB_KEY = /\/blobs\/sha256\/([0-9a-f]{64})$/

/** The key of a blob in the bucket. */
export function keyOf(prefix: string, d: Digest): string {
  return `${prefix}/blobs/sha256/${d.hex}`
}

export class S3Store implements ObjectStore {
  private readonly client: S3Client
  private readonly bucket: string
  private readonly prefix: string

  constructor(s3: S3Settings) {
    this.bucket = s3.bucket as string
    this.prefix = s3.prefix
    const ca = s3.caFile === undefined ? undefined : readFileSync(s3.caFile)
    this.client = new S3Client({
      region: s3.region,
      ...(s3.endpoint === undefined ? {} : { endpoint: s3.endpoint }),
      forcePathStyle: s3.pathStyle,
      ...(s3.accessKeyId !== undefined && s3.secretAccessKey !== undefined
        ? { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } }
        : {}),
      // Retries of a request are the SDK's; a dead service must fail fast enough for the pull to go upstream.
      maxAttempts: 2,
      requestHandler: {
        connectionTimeout: 5000,
        requestTimeout: 30_000,
        httpsAgent: new Agent({ keepAlive: true, ca, rejectUnauthorized: !s3.insecureSkipVerify }),
      },
      // Checksums of the SDK's own (CRC32) are not what radosgw or older services expect; the digest is ours.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
  }

  private key(d: Digest): string {
    return keyOf(this.prefix, d)
  }

  async init(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }))
    } catch (err) {
      if (status(err) !== 404) throw err
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket })).catch((e: unknown) => {
        // Another replica created it meanwhile.
        if (!['BucketAlreadyOwnedByYou', 'BucketAlreadyExists'].includes((e as Error).name)) throw e
      })
    }
  }

  async head(d: Digest): Promise<{ size: number } | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(d) }))
      return { size: r.ContentLength ?? 0 }
    } catch (err) {
      if (status(err) === 404) return undefined
      throw err
    }
  }

  async get(d: Digest, range?: { start: number; end?: number }): Promise<{ body: Readable; total: number }> {
    const r = await this.client.send(
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: this.key(d),
        ...(range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {}),
      }),
    )
    const body = r.Body as Readable
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(r.ContentRange ?? '')
    const total = m ? Number(m[3]) : r.ContentLength
    if (total === undefined || (range && range.start > 0 && !m)) {
      body.destroy()
      throw new RegmirrorError('STORAGE_ERROR', 'object storage answered without the range or size asked for', {
        detail: { digest: d.value },
      })
    }
    return { body, total }
  }

  async delete(d: Digest): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(d) }))
  }

  async *list(): AsyncIterable<StoredObject> {
    let token: string | undefined
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}/blobs/sha256/`, ContinuationToken: token }),
      )
      for (const o of page.Contents ?? []) {
        const m = BLOB_KEY.exec(o.Key ?? '')
        if (m) yield { digest: `sha256:${m[1]}`, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  }

  presign(d: Digest, expirySec: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.key(d) }), { expiresIn: expirySec })
  }

  upload(d: Digest): Upload {
    const { client } = this
    const at = { Bucket: this.bucket, Key: this.key(d) }
    const sink: PartSink = {
      create: async () => {
        const r = await client.send(new CreateMultipartUploadCommand({ ...at, ContentType: 'application/octet-stream' }))
        if (!r.UploadId) throw new RegmirrorError('STORAGE_ERROR', 'object storage gave no upload id')
        return r.UploadId
      },
      part: async (UploadId, PartNumber, Body) => {
        const r = await client.send(new UploadPartCommand({ ...at, UploadId, PartNumber, Body, ContentLength: Body.length }))
        return r.ETag ?? ''
      },
      complete: async (UploadId, parts) => {
        await client.send(
          new CompleteMultipartUploadCommand({
            ...at,
            UploadId,
            MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.n, ETag: p.etag })) },
          }),
        )
      },
      abort: async (UploadId) => {
        await client.send(new AbortMultipartUploadCommand({ ...at, UploadId }))
      },
      put: async (Body) => {
        await client.send(new PutObjectCommand({ ...at, Body, ContentLength: Body.length, ContentType: 'application/octet-stream' }))
      },
    }
    return new PartUpload(sink)
  }

  async abortStaleUploads(olderThan: Date): Promise<number> {
    let aborted = 0
    let KeyMarker: string | undefined
    let UploadIdMarker: string | undefined
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: `${this.prefix}/`, KeyMarker, UploadIdMarker }),
      )
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (u.Initiated && u.Initiated >= olderThan)) continue
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }))
        aborted++
      }
      if (!page.IsTruncated) return aborted
      KeyMarker = page.NextKeyMarker
      UploadIdMarker = page.NextUploadIdMarker
    }
  }

  close(): void {
    this.client.destroy()
  }
}

/** The HTTP status of an SDK error, if it got an answer. */
export function status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode
}
