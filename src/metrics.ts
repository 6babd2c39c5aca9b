import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Every metric of the program, on a registry of its own (not prom-client's global one), so
 * several apps in one process (tests) do not collide. Labels come only from small fixed
 * sets: never a repository name or a digest.
 */
export class Metrics {
  readonly registry = new Registry()

  readonly requests = new Counter({
    name: 'regmirror_requests_total',
    help: 'Manifest and blob requests by kind and cache result (hit, miss, stale, error).',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  })
  readonly servedBytes = new Counter({
    name: 'regmirror_served_bytes_total',
    help: 'Bytes sent to clients, by where they came from: cache (disk) or upstream (a fill in progress).',
    labelNames: ['source'] as const,
    registers: [this.registry],
  })
  readonly accelRedirects = new Counter({
    name: 'regmirror_accel_redirects_total',
    help: 'Cache-hit blob GETs answered with X-Accel-Redirect: the front server (nginx) sent the bytes, which servedBytes does not count.',
    registers: [this.registry],
  })
  readonly upstreamRequests = new Counter({
    name: 'regmirror_upstream_requests_total',
    help: 'Requests sent to upstream registries, by upstream and HTTP status (0 = no response).',
    labelNames: ['upstream', 'status'] as const,
    registers: [this.registry],
  })
  readonly upstreamDuration = new Histogram({
    name: 'regmirror_upstream_request_duration_seconds',
    help: 'Time to response headers of upstream requests.',
    labelNames: ['upstream'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  })
  readonly upstreamBytes = new Counter({
    name: 'regmirror_upstream_bytes_total',
    help: 'Body bytes received from upstream registries.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly rateLimitRemaining = new Gauge({
    name: 'regmirror_upstream_ratelimit_remaining',
    // With workers: each process's own view; the aggregate is the least of them.
    aggregator: 'min',
    help: "Pull quota left to an upstream (Docker Hub's ratelimit-remaining): the best of its credentials', as last reported.",
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly quotaRemaining = new Gauge({
    name: 'regmirror_upstream_quota_remaining',
    // With workers: each process's own view; the aggregate is the least of them.
    aggregator: 'min',
    help: 'Pull quota left per upstream credential, as the upstream last reported it (ratelimit-remaining).',
    labelNames: ['upstream', 'credential'] as const,
    registers: [this.registry],
  })
  readonly revalidationsSkipped = new Counter({
    name: 'regmirror_tag_revalidations_skipped_total',
    help: 'Cached tags past their TTL served without asking upstream, because its pull quota was below quotaReserve.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly negativeHits = new Counter({
    name: 'regmirror_negative_cache_hits_total',
    help: 'Tag and manifest requests answered 404 from the negative cache, without asking upstream.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly upstreamQueueLength = new Gauge({
    name: 'regmirror_upstream_queue_length',
    help: 'Requests waiting for a turn under the upstream limits (maxConcurrent, maxRequestsPerSecond).',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly upstreamQueueWait = new Histogram({
    name: 'regmirror_upstream_queue_wait_seconds',
    help: 'Time requests waited for a turn under the upstream limits, by outcome (admitted, timeout).',
    labelNames: ['upstream', 'outcome'] as const,
    buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  })
  readonly upstreamThrottledBytes = new Counter({
    name: 'regmirror_upstream_throttled_bytes_total',
    help: 'Blob body bytes held back to keep an upstream within maxMbps.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly digestMismatches = new Counter({
    name: 'regmirror_digest_mismatches_total',
    help: 'Upstream content refused because its sha256 did not match its digest.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  })
  readonly upstreamRefused = new Counter({
    name: 'regmirror_upstream_refused_total',
    help: 'Upstream answers refused as wrong (digest or size mismatch, manifest too large, invalid redirect); nothing was cached.',
    labelNames: ['upstream', 'kind', 'cause'] as const,
    registers: [this.registry],
  })
  readonly staleServed = new Counter({
    name: 'regmirror_stale_served_total',
    help: 'Cached tags served because the upstream failed (stale-if-error) or answered a status listed in serveStaleOn.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly fillsStarted = new Counter({
    name: 'regmirror_fills_started_total',
    help: 'Upstream blob downloads started (one per digest however many clients ask).',
    registers: [this.registry],
  })
  readonly fillReadersJoined = new Counter({
    name: 'regmirror_fill_readers_joined_total',
    help: 'Client requests that joined a fill already in progress instead of starting one.',
    registers: [this.registry],
  })
  readonly fillJoinedBytes = new Counter({
    name: 'regmirror_fill_joined_bytes_total',
    help: 'Bytes served to clients that joined a fill in progress.',
    registers: [this.registry],
  })
  readonly fillsFailed = new Counter({
    name: 'regmirror_fills_failed_total',
    help: 'Fills that failed, by cause.',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  })
  /** Counts the fills running now; the app sets it once it has them (see countFillsWith). */
  private fillsNow: () => number = () => 0
  readonly fillsInProgress: Gauge = new Gauge({
    name: 'regmirror_fills_in_progress',
    help: 'Blob downloads (from upstream or from the owning replica) in progress now.',
    registers: [this.registry],
    // Read at scrape time: counting starts and ends would drift whenever a fill ends by an unexpected path.
    collect: (): void => this.fillsInProgress.set(this.fillsNow()),
  })
  readonly fillResumes = new Counter({
    name: 'regmirror_fill_resumes_total',
    help: 'Upstream blob downloads continued with a Range request after breaking off.',
    registers: [this.registry],
  })
  readonly cacheBytes = new Gauge({
    name: 'regmirror_cache_size_bytes',
    help: 'Bytes of content on disk in the cache.',
    registers: [this.registry],
  })
  readonly cacheEntries = new Gauge({
    name: 'regmirror_cache_entries',
    help: 'Blobs and manifests in the cache.',
    registers: [this.registry],
  })
  readonly cacheMaxBytes = new Gauge({
    name: 'regmirror_cache_max_size_bytes',
    help: 'The configured size cap of the cache.',
    registers: [this.registry],
  })
  readonly evictions = new Counter({
    name: 'regmirror_cache_evictions_total',
    help: 'Cache entries evicted to stay under the size cap.',
    registers: [this.registry],
  })
  readonly evictedBytes = new Counter({
    name: 'regmirror_cache_evicted_bytes_total',
    help: 'Bytes evicted to stay under the size cap.',
    registers: [this.registry],
  })
  readonly pinnedBytes = new Gauge({
    name: 'regmirror_cache_pinned_bytes',
    help: 'Bytes of pinned content, never evicted.',
    registers: [this.registry],
  })
  readonly cacheWriteErrors = new Counter({
    name: 'regmirror_cache_write_errors_total',
    help: 'Writes to the cache that failed (full disk, unwritable directory); content is streamed through uncached.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  })
  readonly upstreamOnline = new Gauge({
    name: 'regmirror_upstream_online',
    // With workers: each process's own view; the aggregate is the least of them.
    aggregator: 'min',
    help: '1 when the upstream is considered reachable, 0 while it is marked offline.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })
  readonly endpointUp = new Gauge({
    name: 'regmirror_upstream_endpoint_up',
    // With workers: each process's own view; the aggregate is the least of them.
    aggregator: 'min',
    help: "1 while an endpoint of an upstream's pool is used, 0 while it is set aside after failing (until a probe brings it back).",
    labelNames: ['upstream', 'endpoint'] as const,
    registers: [this.registry],
  })
  readonly endpointRequests = new Counter({
    name: 'regmirror_upstream_endpoint_requests_total',
    help: 'Requests sent to each endpoint of an upstream, by HTTP status (0 = no response).',
    labelNames: ['upstream', 'endpoint', 'status'] as const,
    registers: [this.registry],
  })
  readonly endpointDuration = new Histogram({
    name: 'regmirror_upstream_endpoint_request_duration_seconds',
    help: 'Time to response headers, per endpoint (its latency).',
    labelNames: ['upstream', 'endpoint'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  })
  readonly endpointBytes = new Counter({
    name: 'regmirror_upstream_endpoint_bytes_total',
    help: 'Body bytes received from each endpoint.',
    labelNames: ['upstream', 'endpoint'] as const,
    registers: [this.registry],
  })
  readonly endpointThroughput = new Gauge({
    name: 'regmirror_upstream_endpoint_throughput_bytes_per_second',
    // With workers: each process's own view; the aggregate is the largest of them.
    aggregator: 'max',
    help: 'Running average of body throughput per endpoint (bodies of 256 KiB or more); ranks endpoints for blobs.',
    labelNames: ['upstream', 'endpoint'] as const,
    registers: [this.registry],
  })
  readonly untrustedAnswers = new Counter({
    name: 'regmirror_upstream_untrusted_answers_total',
    help: 'Tag and other mutable answers taken from a `trusted: false` endpoint because no trusted endpoint answered.',
    labelNames: ['upstream', 'endpoint'] as const,
    registers: [this.registry],
  })

  readonly clusterPeers = new Gauge({
    name: 'regmirror_cluster_peers',
    // With workers: each process's own view; the aggregate is the largest of them.
    aggregator: 'max',
    help: 'Replicas this one shares blobs with (itself included), by state: up, or down (left out after a failure).',
    labelNames: ['state'] as const,
    registers: [this.registry],
  })
  readonly peerFetches = new Counter({
    name: 'regmirror_peer_fetches_total',
    help: "Blob misses for another replica's digest: streamed from the owner (ok), or fetched from upstream because it failed (fallback).",
    labelNames: ['result'] as const,
    registers: [this.registry],
  })
  readonly listings = new Counter({
    name: 'regmirror_listing_answers_total',
    help:
      'Search, tag list and referrers answers by where they came from: upstream, cache (memory, within its TTL), stale (the ' +
      'upstream failed), local (search: names this mirror holds, the search upstream failed or the mirror is offline).',
    labelNames: ['kind', 'source'] as const,
    registers: [this.registry],
  })

  readonly storageErrors = new Counter({
    name: 'regmirror_storage_errors_total',
    help: 'Object storage failures by operation (head, get, upload, presign, init, cleanup); each sets the bucket aside for offline.coolDown.',
    labelNames: ['op'] as const,
    registers: [this.registry],
  })
  readonly storageUploads = new Counter({
    name: 'regmirror_storage_uploads_total',
    help: 'Blobs fetched from upstream and uploaded to object storage: stored (verified, completed), aborted, skipped (bucket set aside).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })
  readonly storageServed = new Counter({
    name: 'regmirror_storage_served_total',
    help: 'Blob GETs the hot tier missed and the bucket held: fill (streamed through the hot tier) or redirect (307 to a presigned URL).',
    labelNames: ['how'] as const,
    registers: [this.registry],
  })

  countFillsWith(count: () => number): void {
    this.fillsNow = count
  }

  /**
   * The text /metrics answers. With workers it is every process's metrics aggregated by the primary
   * (src/workers/): counters and most gauges summed, the process's own (memory, CPU, event loop)
   * kept apart by their `worker` label.
   */
  exposition: () => Promise<string> = () => this.registry.metrics()

  /** `worker`: this process's number among workers (0: the primary), a label on the default (process) metrics. */
  constructor(opts: { defaultMetrics?: boolean; worker?: number } = {}) {
    const labels = opts.worker === undefined ? undefined : { worker: String(opts.worker) }
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'regmirror_', labels })
  }
}
