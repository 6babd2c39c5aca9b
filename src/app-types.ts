import type { Config } from './config/schema.js'
import type { BlobStore } from './cache/blob-store.js'
import type { LruIndex } from './cache/lru-index.js'
import type { MetadataStore } from './cache/metadata-store.js'
import type { Pins } from './cache/pins.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { BlobService } from './proxy/blob-service.js'
import type { ManifestService } from './proxy/manifest-service.js'
import type { TagService } from './proxy/tag-service.js'
import type { UpstreamClient } from './upstream/client.js'
import type { Registries } from './upstream/registries.js'

/** Everything the HTTP layer needs, built once by app.ts. */
export interface Services {
  config: Config
  log: Logger
  metrics: Metrics
  registries: Registries
  upstream: UpstreamClient
  store: BlobStore
  index: LruIndex
  pins: Pins
  metadata: MetadataStore
  manifests: ManifestService
  tags: TagService
  blobs: BlobService
}
