import type { AddressInfo } from 'node:net'
import { Access } from './access/access.js'
import { Peers } from './cluster/peers.js'
import { Visibility } from './access/visibility.js'
import type { Services } from './app-types.js'
import { BlobStore } from './cache/blob-store.js'
import { Fills, type SharedFills } from './cache/fills.js'
import { Hits } from './cache/hits.js'
import { ContentLinks } from './cache/links.js'
import { LruIndex, type CacheIndex } from './cache/lru-index.js'
import { MetadataStore } from './cache/metadata-store.js'
import { Registries, isPrivate } from './config/registries.js'
import type { Config } from './config/schema.js'
import { closeNow, drain, listenAll, urlOf } from './http/lifecycle.js'
import { createListeners, type Listeners } from './http/server.js'
import { watchFiles } from './file-watch.js'
import { Kv, type ForwardStore } from './kv.js'
import { createLogger, type Logger } from './log.js'
import { Metrics } from './metrics.js'
import { parseDigest } from './oci/reference.js'
import { BlobService } from './proxy/blob-service.js'
import { CatalogService } from './proxy/catalog-service.js'
import { ManifestService } from './proxy/manifest-service.js'
import { NegativeCache } from './proxy/negative-cache.js'
import { Pins } from './proxy/pins.js'
import { ReferrersService } from './proxy/referrers-service.js'
import { Reporter } from './proxy/reporting.js'
import { SearchService } from './proxy/search-service.js'
import { TagListService } from './proxy/tag-list-service.js'
import { TagService } from './proxy/tag-service.js'
import { PullActivity } from './status/activity.js'
import { StatusReport } from './status/report.js'
import type { Bucket } from './storage/bucket.js'
import { FillLeases } from './storage/fill-lease.js'
import { openBucket } from './storage/open.js'
import { UpstreamClient } from './upstream/client.js'
import { KvTokens } from './upstream/token-store.js'

/** The services and the parts under them (tests and shutdown reach into the parts). */
export interface AppParts extends Services {
  store: BlobStore
  index: CacheIndex
  metadata: MetadataStore
  pins: Pins
  upstream: UpstreamClient
  /** Who may see what the cache holds (private content). */
  links: ContentLinks
  peers?: Peers
  /** The bucket tier (storage.backend: s3). */
  bucket?: Bucket
}

export interface App {
  services: AppParts
  listeners: Listeners
  /** Starts the listeners (port 0 picks a free one); resolves with the plain listener's address. */
  listen(): Promise<AddressInfo>
  /** Base URL of the plain listener once listening, e.g. http://127.0.0.1:5000 */
  url(): string
  /** Base URL of the TLS listener, when there is one: https://127.0.0.1:5443 */
  tlsUrl(): string | undefined
  /** A graceful stop (SIGTERM): responses in flight may finish within `deadlineMs`, then close(). */
  shutdown(deadlineMs: number): Promise<void>
  /** Closes everything now; downloads nobody waits for are given up, leaving nothing behind. */
  close(): Promise<void>
}

export interface AppOptions {
  logger?: Logger
  /** This process is one of several workers (src/workers/worker.ts). */
  worker?: WorkerRole
}

/** What a worker shares with the others through the primary (docs/architecture.md, "Workers"). */
export interface WorkerRole {
  /** 1…N; logs and the process metrics carry it. */
  id: number
  /** The primary's index, seen from here. */
  index: CacheIndex
  /** Downloads: one per digest across the workers. */
  fills: SharedFills
  /** The primary's in-memory tag records and tokens; undefined with Redis (each worker connects to it). */
  kv?: ForwardStore
  /** Every process's metrics, aggregated by the primary. */
  metrics(): Promise<string>
  /** Listening and ready: the primary logs the one "regmirror listening" line once every worker is. */
  listening(addrs: { plain: AddressInfo; tls?: AddressInfo }): void
  /**
   * Whether this worker listens before it is ready, answering `/healthz` and "starting" while the index is rebuilt:
   * only the first worker of a start. The others listen once ready, so a connection the primary hands them is
   * never answered 503 while another worker could serve it (a restarted worker's above all).
   */
  listenEarly: boolean
}

/**
 * The composition root: builds every part with its dependencies, bottom up (docs/architecture.md
 * draws the layers). Nothing happens on import.
 */
export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  const parts = await openParts(config, opts.logger ?? createLogger(config.log.level), { warmLater: true, worker: opts.worker })
  const { log, status } = parts
  const listeners = createListeners(parts)
  let addrs: { plain: AddressInfo; tls?: AddressInfo } | undefined
  const release = () => parts.close()
  return {
    services: parts,
    listeners,
    listen: async () => {
      // Listening first: /healthz answers and /readyz says "not yet" while a large cache's index is rebuilt.
      const early = opts.worker?.listenEarly ?? true
      const listen = () => listenAll(listeners, config.listen, config.server.tls.listen, config.server.reloadInterval)
      if (early) addrs = await listen()
      await parts.warm()
      if (!early) addrs = await listen()
      if (!addrs) throw new Error('not listening')
      status.ready = true
      const at = (a: AddressInfo | undefined) => a && { address: a.address, port: a.port }
      const upstreams = config.upstreams.map((u) => u.name)
      if (opts.worker) {
        opts.worker.listening(addrs)
        return addrs.plain
      }
      log.info({ ...at(addrs.plain), tls: at(addrs.tls), dataDir: config.dataDir, upstreams }, 'regmirror listening')
      return addrs.plain
    },
    url: () => urlOf('http', addrs?.plain ?? (listeners.plain.address() as AddressInfo)),
    tlsUrl: () => (addrs?.tls ? urlOf('https', addrs.tls) : undefined),
    shutdown: async (deadlineMs) => {
      status.draining = true
      await drain(listeners, deadlineMs, log)
      await release()
    },
    close: async () => {
      await closeNow(listeners)
      await release()
    },
  }
}

/** The parts with nothing listening: the server's, and the tools' (preload, import) that work on a data directory. */
export interface OpenParts extends AppParts {
  /** Resolves the pins, rebuilds the index from disk, starts the peers: done by openParts unless `warmLater`. */
  warm(): Promise<void>
  /** Gives up downloads in progress (leaving nothing behind), flushes the index, closes the stores. */
  close(): Promise<void>
}

export async function openParts(
  config: Config,
  log: Logger,
  opts: { tool?: boolean; warmLater?: boolean; worker?: WorkerRole } = {},
): Promise<OpenParts> {
  const parts = await buildParts(config, log, opts.tool === true, opts.worker)
  const { index, blobs, upstream, metadata, pins, store, peers, bucket } = parts
  // preload and import may add to this directory while a mirror runs on it: new content is found
  // on its first miss (the index adopts it), new pins and changed tags when they say so here.
  const changes = watchFiles(opts.tool ? [] : [store.layout.pinsFile, store.layout.changedFile], config.server.reloadInterval, () => {
    log.info({ dataDir: config.dataDir }, 'the data directory changed (preload or import): reading pins and tags again')
    void Promise.all([pins.loadPersisted(), metadata.forgetLocal()]).catch((err: unknown) =>
      log.error({ err }, 'cannot read the changed pins or tags'),
    )
  })
  const open: OpenParts = {
    ...parts,
    warm: async () => {
      // Pins are resolved before the index loads: loading evicts when the cap shrank, and must skip them.
      await pins.add(config.cache.pins)
      await pins.loadPersisted()
      const loadStart = Date.now()
      await index.load()
      log.info({ entries: index.count, bytes: index.size, pinned: index.pinnedBytes(), ms: Date.now() - loadStart }, 'cache index loaded')
      await peers?.start()
      await bucket?.start()
    },
    close: async () => {
      changes.stop()
      await peers?.stop()
      // Downloads no response is waiting for any more are given up, leaving nothing behind;
      // waiting for them could hold a shutdown for as long as the slowest upstream.
      const fills = blobs.activeFills()
      for (const f of fills) f.cancel()
      await Promise.allSettled(fills.map((f) => f.finished))
      await bucket?.stop()
      parts.access.stop()
      await index.flush()
      await upstream.close()
      await metadata.close()
    },
  }
  if (!opts.warmLater) await open.warm()
  return open
}

/** The bucket tier (storage.backend: s3), and the fill leases of replicas on one bucket and one Redis. */
async function openStorage(config: Config, kv: Kv, peers: Peers | undefined, metrics: Metrics, log: Logger, evicts: boolean) {
  // Replicas on one bucket and one Redis: the fill lease, not rendezvous, decides which one fetches a blob.
  const leases =
    config.storage.backend === 's3' && kv.redis && peers ? new FillLeases(kv, config.metadata.prefix, peers.self, log) : undefined
  const bucket = await openBucket(config, metrics, log, { kv, leases, evicts })
  return { leases, bucket }
}

async function buildParts(config: Config, log: Logger, tool: boolean, worker?: WorkerRole): Promise<AppParts> {
  const metrics = new Metrics({ worker: worker?.id })
  if (worker) metrics.exposition = () => worker.metrics()
  const registries = new Registries(config)
  const store = new BlobStore(config.dataDir)
  // A worker leaves tmp/ alone: the other workers' downloads are there (the primary cleared it).
  await store.init({ clearTmp: !tool && !worker })
  const local = worker ? undefined : new LruIndex(store, config.cache.maxSize, config.cache.touchInterval, metrics, log)
  const index: CacheIndex = worker?.index ?? (local as LruIndex)
  const kv = await Kv.open({ ...config.metadata, forward: worker?.kv }, log)
  const metadata = new MetadataStore(store.layout, kv, true)
  // Eviction removes a manifest's media-type record first, so verify can tell an evicted tag from a lost one.
  if (local) local.beforeRemove = (digest) => metadata.deleteManifestInfo(parseDigest(digest))
  const pins = new Pins(registries, store, metadata, index, log)
  // Only a shared store is worth a second lookup: in memory it would just be a copy of the client's own.
  const upstream = new UpstreamClient(config, log, metrics, kv.shared ? { sharedTokens: new KvTokens(kv) } : {})
  const report = new Reporter(metrics, log, upstream.incidents)
  const links = await ContentLinks.open(store.layout, config.upstreams.some(isPrivate))
  const fills = new Fills(store, index, log, config.retries.resumeAttempts, worker?.fills)
  const negative = new NegativeCache(metrics)
  // The tools keep what they fetch in their own data directory: no peers for them.
  const peers = Peers.enabled(config) && !tool ? new Peers(config, log, metrics) : undefined
  const { leases, bucket } = await openStorage(config, kv, peers, metrics, log, worker === undefined || worker.id === 1)
  const manifests = new ManifestService(store, index, metadata, upstream, metrics, report, links, negative, pins, bucket)
  const tags = new TagService(metadata, manifests, upstream, metrics, report, links, negative, pins)
  const blobs = new BlobService(new Hits(store, index, log), fills, upstream, metrics, report, links, peers, bucket, leases)
  metrics.countFillsWith(() => fills.active().length)
  const tagLists = new TagListService(upstream, metadata, metrics, log)
  const referrers = new ReferrersService(store.layout, upstream, tags, report, metrics, config.referrers.cacheTtl)
  const catalog = new CatalogService(metadata, registries)
  const search = new SearchService(config, registries, upstream, catalog, metrics, log)
  const access = new Access(config, log)
  const visibility = new Visibility(links, index, fills, upstream)
  const status = { ready: false, draining: false }
  const activity = new PullActivity()
  const statusReport = new StatusReport({ config, metrics, index, blobs, pins, upstream, activity, status })
  return {
    config,
    log,
    metrics,
    registries,
    access,
    visibility,
    store,
    index,
    metadata,
    pins,
    upstream,
    manifests,
    tags,
    tagLists,
    blobs,
    referrers,
    catalog,
    search,
    links,
    peers,
    bucket,
    activity,
    statusReport,
    status,
  }
}
