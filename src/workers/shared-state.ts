import { unlink } from 'node:fs/promises'
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import { BlobStore } from '../cache/blob-store.js'
import { LruIndex } from '../cache/lru-index.js'
import { MetadataStore } from '../cache/metadata-store.js'
import { Registries } from '../config/registries.js'
import type { Config } from '../config/schema.js'
import { Kv, memoryRecords } from '../kv.js'
import type { Logger } from '../log.js'
import { Metrics } from '../metrics.js'
import { parseDigest } from '../oci/reference.js'
import { Pins } from '../proxy/pins.js'
import { FillBoard } from './fill-board.js'
import { IndexHost } from './index-host.js'
import type { FillReport, PrimaryApi, WorkerApi } from './protocol.js'
import type { Handlers, Rpc } from './rpc.js'

/** A worker as the shared state sees it: its unique id (a restarted worker gets a new one) and its channel. */
export interface WorkerLink {
  id: number
  rpc: Rpc<WorkerApi, PrimaryApi>
}

/**
 * What the primary owns for its workers (docs/architecture.md, "Workers"): the index (loaded once,
 * here), the downloads in progress (FillBoard), the in-memory tag records and tokens, and the
 * aggregate of the metrics. `handlers(worker)` answers one worker's requests and events.
 */
export class SharedState {
  readonly metrics = new Metrics({ worker: 0 })
  readonly host: IndexHost
  readonly board: FillBoard
  private readonly records = memoryRecords()
  private readonly workers = new Map<number, WorkerLink>()
  private loaded!: () => void
  private readonly ready = new Promise<void>((resolve) => (this.loaded = resolve))

  private constructor(
    private readonly config: Config,
    private readonly store: BlobStore,
    private readonly log: Logger,
  ) {
    const index = new LruIndex(store, config.cache.maxSize, config.cache.touchInterval, this.metrics, log)
    this.host = new IndexHost(
      index,
      (m) => {
        for (const w of this.workers.values()) w.rpc.notify('index.changes', m)
      },
      (w) => this.workers.has(w),
    )
    this.board = new FillBoard({
      cached: (d) => index.has(d),
      acquire: (w, d) => this.host.acquire(w, d),
      send: (w, name, data) => this.workers.get(w)?.rpc.notify(name, data),
      removeFile: (p) => unlink(p).catch(() => {}),
    })
  }

  /** Clears tmp/ (no worker runs yet) and builds the state; `load()` reads the index. */
  static async open(config: Config, log: Logger): Promise<SharedState> {
    const store = new BlobStore(config.dataDir)
    await store.init({ clearTmp: true })
    return new SharedState(config, store, log)
  }

  /** Resolves the configured pins, then rebuilds the index from disk (evicting over the cap, skipping pins). */
  async load(): Promise<void> {
    const kv = await Kv.open({ ...this.config.metadata, redis: undefined }, this.log)
    const metadata = new MetadataStore(this.store.layout, kv, true)
    this.host.index.beforeRemove = (digest) => metadata.deleteManifestInfo(parseDigest(digest))
    const pins = new Pins(new Registries(this.config), this.store, metadata, this.host.index, this.log)
    await pins.add(this.config.cache.pins)
    await pins.loadPersisted()
    this.host.setPins(0, pins.digests())
    const start = Date.now()
    await this.host.index.load()
    const index = this.host.index
    this.log.info({ entries: index.count, bytes: index.size, pinned: index.pinnedBytes(), ms: Date.now() - start }, 'cache index loaded')
    this.loaded()
  }

  add(w: WorkerLink): void {
    this.workers.set(w.id, w)
  }

  /** A worker exited: its holds, reservations, pins and downloads are dropped (followers of those fail). */
  async gone(id: number): Promise<void> {
    this.workers.delete(id)
    this.host.workerGone(id)
    await this.board.workerGone(id)
  }

  async flush(): Promise<void> {
    await this.host.index.flush()
  }

  /** The answers to one worker's requests. */
  handlers(id: number): Handlers<PrimaryApi> {
    const { host, board, records } = this
    return {
      'index.snapshot': async () => {
        await this.ready
        return host.snapshot()
      },
      'index.reserve': (size) => host.reserve(id, size),
      'index.add': (d, size, reserved) => host.add(id, d, size, reserved),
      'index.adopt': (d) => host.index.adopt(d),
      'index.hold': (d) => host.hold(id, d),
      'fills.claim': (d) => board.claim(id, d),
      'fills.active': (d) => board.active(d),
      'kv.get': (key) => records.get(key),
      'kv.set': (key, value) => {
        this.kvChanged(id, key)
        return !!records.set(key, value as object)
      },
      'kv.delete': (key) => {
        this.kvChanged(id, key)
        return records.delete(key)
      },
      'kv.clear': () => {
        this.kvChanged(id, '')
        records.clear()
      },
      metrics: () => this.exposition(),
    }
  }

  /** Tells the other workers to drop their copy of `key` (`''`: of every record); KvClient keeps them. */
  private kvChanged(by: number, key: string): void {
    for (const w of this.workers.values()) if (w.id !== by) w.rpc.notify('kv.changed', key)
  }

  /** The one-way events of one worker. */
  listen(w: WorkerLink): void {
    const { host, board } = this
    const on = <T>(name: string, fn: (data: T) => void) => w.rpc.on(name, (d) => fn(d as T))
    on<string>('index.touch', (d) => host.index.touch(d))
    on<number>('index.release', (n) => host.release(w.id, n))
    on<string>('index.forget', (d) => host.index.forget(d))
    on<string>('index.acquire', (d) => host.acquire(w.id, d))
    on<string>('index.releaseUse', (d) => host.releaseUse(w.id, d))
    on<string[]>('index.pins', (ds) => host.setPins(w.id, ds))
    on<FillReport>('fill', (r) => board.report(w.id, r))
    on<string>('fill.leave', (d) => board.leave(w.id, d))
  }

  /**
   * Every process's metrics in one exposition: the workers' (asked now) and the primary's own.
   * Counters and gauges are summed unless a gauge says otherwise (metrics.ts: `aggregator`); the
   * process metrics carry a `worker` label, so each process's memory and CPU stay apart.
   */
  async exposition(): Promise<string> {
    const asked = [...this.workers.values()].map((w) => w.rpc.call('metrics.json', [], { timeoutMs: 5000 }).catch(() => []))
    const lists = [
      await this.metrics.registry.getMetricsAsJSON(),
      ...((await Promise.all(asked)) as MetricObjectWithValues<MetricValue<string>>[][]),
    ]
    return AggregatorRegistry.aggregate(lists).metrics()
  }
}
