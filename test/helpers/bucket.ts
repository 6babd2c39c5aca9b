/**
 * Looking into the bucket of an object-storage test from outside regmirror, with the same SDK: which blob objects
 * and which multipart uploads exist. Pairs with radosgw.ts (the server) and storageConfig (a mirror on it).
 */
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import type { Radosgw } from './radosgw.js'

export interface BucketView {
  /** The key regmirror stores a digest under (docs/configuration.md, "Object storage"). */
  key(digest: string): string
  /** The object's bytes, undefined when there is none. */
  object(digest: string): Promise<Buffer | undefined>
  exists(digest: string): Promise<boolean>
  /** Digests of the blob objects under the prefix. */
  digests(): Promise<string[]>
  /** Keys of the multipart uploads in progress under the prefix. */
  uploads(): Promise<string[]>
  close(): void
}

/** A signed S3 client of the test radosgw (path-style, as the helper's gateway needs). */
export function clientOf(rgw: Radosgw): S3Client {
  return new S3Client({
    endpoint: rgw.endpoint,
    region: rgw.region,
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
  })
}

export function bucketView(rgw: Radosgw, bucket: string, prefix = 'regmirror'): BucketView {
  const s3 = clientOf(rgw)
  const key = (digest: string) => `${prefix}/blobs/sha256/${digest.replace(/^sha256:/, '')}`
  const missing = (err: unknown) => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404
  return {
    key,
    object: async (digest) => {
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key(digest) }))
        return Buffer.from(await r.Body!.transformToByteArray())
      } catch (err) {
        if (missing(err)) return undefined
        throw err
      }
    },
    exists: async (digest) => {
      try {
        await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key(digest) }))
        return true
      } catch (err) {
        if (missing(err)) return false
        throw err
      }
    },
    digests: async () => {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/blobs/sha256/` }))
      return (r.Contents ?? []).map((o) => `sha256:${o.Key!.split('/').pop()!}`)
    },
    uploads: async () => {
      const r = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${prefix}/` }))
      return (r.Uploads ?? []).map((u) => u.Key!)
    },
    close: () => s3.destroy(),
  }
}

/** The `storage` section of a mirror on this radosgw and bucket. */
export function storageConfig(rgw: Radosgw, bucket: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    backend: 's3',
    s3: {
      endpoint: rgw.endpoint,
      region: rgw.region,
      bucket,
      pathStyle: true,
      accessKeyId: rgw.accessKeyId,
      secretAccessKey: rgw.secretAccessKey,
      ...extra,
    },
  }
}
