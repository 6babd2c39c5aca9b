import type { Config } from '../config/schema.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { Kv } from '../kv.js'
import { Bucket } from './bucket.js'
import { BucketTier } from './bucket-tier.js'
import type { FillLeases } from './fill-lease.js'

/**
 * The bucket tier of `storage.backend: s3`, or undefined for `filesystem`. The AWS SDK is imported here,
 * only when it is used: a filesystem mirror does not pay its load time.
 */
export async function openBucket(
  config: Config,
  metrics: Metrics,
  log: Logger,
  shared: { kv: Kv; leases?: FillLeases },
): Promise<Bucket | undefined> {
  if (config.storage.backend !== 's3') return undefined
  const { S3Store } = await import('./s3-store.js')
  const s3 = config.storage.s3
  const store = new S3Store(s3)
  const bucket = new Bucket(store, s3, config.offline.coolDown, metrics, log.child({ part: 'storage' }))
  if (s3.maxSize !== undefined) {
    const touch = config.cache.touchInterval
    bucket.tier = new BucketTier(
      store,
      shared.kv,
      shared.leases,
      {
        prefix: config.metadata.prefix,
        maxSize: s3.maxSize,
        touchIntervalMs: touch,
        evictIntervalMs: s3.evictInterval,
        // A read started after the last recorded access, or a presigned URL still valid, may be using the object.
        protectMs: Math.max(2 * touch, s3.redirectExpiry + touch),
        self: config.cluster.self ?? 'this replica',
      },
      log.child({ part: 'storage' }),
    )
  }
  return bucket
}
