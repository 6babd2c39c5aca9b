import type { Access } from './access/access.js'
import type { Visibility } from './access/visibility.js'
import type { Config } from './config/schema.js'
import type { Registries } from './config/registries.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { BlobService } from './proxy/blob-service.js'
import type { CatalogService } from './proxy/catalog-service.js'
import type { ManifestService } from './proxy/manifest-service.js'
import type { ReferrersService } from './proxy/referrers-service.js'
import type { SearchService } from './proxy/search-service.js'
import type { TagListService } from './proxy/tag-list-service.js'
import type { TagService } from './proxy/tag-service.js'
import type { PullActivity } from './status/activity.js'
import type { StatusReport } from './status/report.js'

/** Everything the HTTP layer may use, built once by app.ts: the services, and what requests report to. */
export interface Services {
  config: Config
  log: Logger
  metrics: Metrics
  registries: Registries
  /** Who may pull what (checked before any service is asked). */
  access: Access
  /** Private content stays with the upstream and repository that confirmed it. */
  visibility: Visibility
  manifests: ManifestService
  tags: TagService
  tagLists: TagListService
  blobs: BlobService
  referrers: ReferrersService
  /** `/v2/_catalog`: the repositories the cache holds. */
  catalog: CatalogService
  /** `/v1/search`: `docker search MIRROR/term`. */
  search: SearchService
  /** Recent pulls and the most pulled repositories: the manifest handler tells it what it served. */
  activity: PullActivity
  /** The status page's data (`/`, `/api/status`). */
  statusReport: StatusReport
  /** Where the server is in its life: /readyz answers from it, and registry requests wait for `ready`. */
  status: { ready: boolean; draining: boolean }
}
