import type { Config } from '../config/schema.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { Bucket } from './bucket.js'

/**
 * The bucket tier of `storage.backend: s3`, or undefined for `filesystem`. The AWS SDK is imported here,
 * only when it is used: a filesystem mirror does not pay its load time.
 */
export async function openBucket(config: Config, metrics: Metrics, log: Logger): Promise<Bucket | undefined> {
  if (config.storage.backend !== 's3') return undefined
  const { S3Store } = await import('./s3-store.js')
  return new Bucket(new S3Store(config.storage.s3), config.storage.s3, config.offline.coolDown, metrics, log.child({ part: 'storage' }))
}
