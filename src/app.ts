import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import type { Services } from './app-types.js'
import type { Config } from './config/schema.js'
import { BlobStore } from './cache/blob-store.js'
import { LruIndex } from './cache/lru-index.js'
import { MetadataStore } from './cache/metadata-store.js'
import { Pins } from './cache/pins.js'
import { createHttpServer } from './http/server.js'
import { createLogger, type Logger } from './log.js'
import { parseDigest } from './oci/reference.js'
import { Metrics } from './metrics.js'
import { BlobService } from './proxy/blob-service.js'
import { ManifestService } from './proxy/manifest-service.js'
import { TagService } from './proxy/tag-service.js'
import { UpstreamClient } from './upstream/client.js'
import { Registries } from './upstream/registries.js'

export interface App {
  services: Services
  server: Server
  /** Starts listening on the configured address (port 0 picks a free one). */
  listen(): Promise<AddressInfo>
  /** Base URL once listening, e.g. http://127.0.0.1:5000 */
  url(): string
  close(): Promise<void>
}

export interface AppOptions {
  logger?: Logger
}

/** The composition root: builds every part with its dependencies. Nothing happens on import. */
export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  const log = opts.logger ?? createLogger(config.log.level)
  const metrics = new Metrics()
  const registries = new Registries(config)
  const store = new BlobStore(config.dataDir)
  await store.init()
  const index = new LruIndex(store, config.cache.maxSize, config.cache.touchInterval, metrics, log)
  const metadata = await MetadataStore.create(config.dataDir, config.metadata, log)
  index.beforeRemove = (digest) => metadata.deleteManifestInfo(parseDigest(digest))
  // Pins are resolved before the index loads: loading evicts when the cap shrank, and must skip them.
  const pins = new Pins(registries, store, metadata, index, log)
  await pins.add(config.cache.pins)
  const loadStart = Date.now()
  await index.load()
  log.info({ entries: index.count, bytes: index.size, pinned: index.pinnedBytes(), ms: Date.now() - loadStart }, 'cache index loaded')
  // Only a shared store is worth a second lookup: in memory it would just be a copy of the client's own.
  const upstream = new UpstreamClient(config, log, metrics, metadata.shared ? { sharedTokens: metadata } : {})
  const manifests = new ManifestService(store, index, metadata, upstream, metrics, log, pins)
  const tags = new TagService(metadata, manifests, upstream, metrics, log, pins)
  const blobs = new BlobService(config, store, index, upstream, metrics, log)
  const services: Services = { config, log, metrics, registries, upstream, store, index, pins, metadata, manifests, tags, blobs }
  const server = createHttpServer(services)

  return {
    services,
    server,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once('error', reject)
        server.listen(config.listen.port, config.listen.host, () => {
          server.off('error', reject)
          const addr = server.address() as AddressInfo
          log.info(
            { address: addr.address, port: addr.port, dataDir: config.dataDir, upstreams: config.upstreams.map((u) => u.name) },
            'regmirror listening',
          )
          resolve(addr)
        })
      }),
    url: () => {
      const addr = server.address() as AddressInfo
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
      return `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`
    },
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      // Downloads no response is waiting for any more are given up, leaving nothing behind;
      // waiting for them could hold a shutdown for as long as the slowest upstream.
      const fills = blobs.activeFills()
      for (const f of fills) f.cancel()
      await Promise.allSettled(fills.map((f) => f.finished))
      await index.flush()
      await upstream.close()
      await metadata.close()
    },
  }
}
