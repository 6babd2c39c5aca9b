import { randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { Kv } from '../kv.js'
import type { Logger } from '../log.js'
import { parseDigest } from '../oci/reference.js'
import type { ObjectStore, StoredObject } from './object-store.js'
import type { FillLeases } from './fill-lease.js'

export interface BucketTierOptions {
  /** Redis key prefix (`metadata.prefix`). */
  prefix: string
  /** The bound of the bucket tier in bytes (`storage.s3.maxSize`). */
  maxSize: number
  /** At most one access-time write per digest per this many ms, on each replica (`cache.touchInterval`). */
  touchIntervalMs: number
  /** How often a replica tries to run an eviction pass. */
  evictIntervalMs: number
  /** An object accessed this recently is never deleted: a read or a redirect of it may be in progress. */
  protectMs: number
  /** This replica, named in the eviction lock (logs). */
  self: string
}

export interface EvictionPass {
  /** Bytes in the bucket before and after the pass. */
  before: number
  after: number
  deleted: string[]
  /** Objects that would have gone but were protected (a fill lease, a recent access). */
  protectedCount: number
}

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`
/** Access times are read back this many digests at a time (ZMSCORE). */
const BATCH = 500

/**
 * The bucket tier's bound (issue #17): least recently used objects across all replicas are deleted once the bucket
 * holds more than `maxSize`. Every replica writes the access times of what it reads from (or redirects to) the
 * bucket into one Redis sorted set (`<prefix>:bucket:atime`, digest → ms), at most once per touch interval per
 * digest; sizes come from listing the bucket, which also finds objects Redis never heard of (their last-modified
 * time stands in). One replica at a time runs a pass: the one that takes `<prefix>:bucket:evict` (SET NX with an
 * expiry, so a replica that dies mid-pass does not block the others for long).
 *
 * Without Redis (a single replica) the access times are kept in this process, lost on restart (upload times
 * stand in until the objects are read again).
 *
 * The race, and why it is small: a replica may decide to read an object (HEAD found it) just as the pass deletes
 * it. Objects with a fill lease, or accessed within `protectMs`, are never deleted, and a replica records the
 * access before it reads, and the pass reads an object's access time again just before deleting it; so only a read
 * that starts in between (or whose access time a replica had not written yet: at most one touch interval) can meet a
 * deleted object.
 * That read fails like any bucket failure (the fill goes to upstream instead), and nothing unverified is served.
 */
export class BucketTier {
  private readonly touchedAt = new LRUCache<string, number>({ max: 100_000 })
  /** Without Redis (one replica): the access times live here, and this replica is the only one to evict. */
  private readonly localTimes = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private running: Promise<EvictionPass | undefined> | undefined

  constructor(
    private readonly store: Pick<ObjectStore, 'list' | 'delete'>,
    private readonly kv: Kv,
    private readonly leases: Pick<FillLeases, 'held'> | undefined,
    private readonly opts: BucketTierOptions,
    private readonly log: Logger,
  ) {}

  private get atimeKey(): string {
    return `${this.opts.prefix}:bucket:atime`
  }

  /** A replica read `digest` from the bucket, or sent a client to it: its access time, at most once per interval. */
  touched(digest: string, now = Date.now()): void {
    const last = this.touchedAt.get(digest)
    if (last !== undefined && now - last < this.opts.touchIntervalMs) return
    this.touchedAt.set(digest, now)
    if (this.kv.redis) void this.kv.command(['ZADD', this.atimeKey, String(now), digest])
    else this.localTimes.set(digest, now)
  }

  /** An upload of `digest` was completed: it counts as accessed now (a new object is not the first to go). */
  committed(digest: string): void {
    this.touchedAt.delete(digest)
    this.touched(digest)
  }

  /** Runs a pass every evictIntervalMs (when the bound is set). */
  start(): void {
    if (this.opts.maxSize <= 0 || this.timer) return
    this.timer = setInterval(() => void this.evictOnce(), this.opts.evictIntervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.running
  }

  /** One pass if this replica gets the lock; undefined when another has it, Redis failed, or the pass failed. */
  evictOnce(): Promise<EvictionPass | undefined> {
    this.running ??= this.pass().finally(() => (this.running = undefined))
    return this.running
  }

  private async pass(): Promise<EvictionPass | undefined> {
    const lock = `${this.opts.prefix}:bucket:evict`
    const token = `${this.opts.self} ${randomUUID()}`
    const ttl = Math.max(this.opts.evictIntervalMs * 2, 60_000)
    if (this.kv.redis && (await this.kv.command(['SET', lock, token, 'NX', 'PX', String(ttl)])) !== 'OK') return undefined
    try {
      return await this.evict()
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'bucket eviction pass failed; trying again next interval')
      return undefined
    } finally {
      if (this.kv.redis) await this.kv.command(['EVAL', RELEASE, '1', lock, token])
    }
  }

  private async evict(): Promise<EvictionPass> {
    const objects: StoredObject[] = []
    let before = 0
    for await (const o of this.store.list()) {
      objects.push(o)
      before += o.size
    }
    const pass: EvictionPass = { before, after: before, deleted: [], protectedCount: 0 }
    if (before <= this.opts.maxSize) return pass
    const atimes = await this.accessTimes(objects.map((o) => o.digest))
    const at = (o: StoredObject) => atimes.get(o.digest) ?? o.lastModified.getTime()
    objects.sort((a, b) => at(a) - at(b))
    if (!this.kv.redis) {
      // Times of objects that are gone (deleted by hand, by a lifecycle rule) would otherwise stay forever.
      const listed = new Set(objects.map((o) => o.digest))
      for (const d of [...this.localTimes.keys()]) if (!listed.has(d)) this.localTimes.delete(d)
    }
    for (const o of objects) {
      if (pass.after <= this.opts.maxSize) break
      if ((await this.recentlyUsed(o, at(o))) || (await this.leases?.held(o.digest)) === true) {
        pass.protectedCount++
        continue
      }
      await this.store.delete(parseDigest(o.digest))
      if (this.kv.redis) void this.kv.command(['ZREM', this.atimeKey, o.digest])
      else this.localTimes.delete(o.digest)
      pass.after -= o.size
      pass.deleted.push(o.digest)
    }
    this.log.info(
      { before, after: pass.after, maxSize: this.opts.maxSize, deleted: pass.deleted.length, protected: pass.protectedCount },
      'bucket eviction pass',
    )
    return pass
  }

  /**
   * Whether the object was accessed within protectMs: by the time read at the start of the pass, and (with Redis)
   * read again just before the delete, so an access during a long pass still protects it. Unknown counts as yes.
   */
  private async recentlyUsed(o: StoredObject, seen: number): Promise<boolean> {
    const recent = Date.now() - this.opts.protectMs
    if (seen > recent) return true
    if (!this.kv.redis) return false
    const now = await this.kv.command(['ZSCORE', this.atimeKey, o.digest])
    if (now === undefined) return true
    return now !== null && Number(now) > recent
  }

  /** digest → last access (ms) from Redis; digests it has no time for are left out. */
  private async accessTimes(digests: string[]): Promise<Map<string, number>> {
    if (!this.kv.redis) return this.localTimes
    const found = new Map<string, number>()
    for (let i = 0; i < digests.length; i += BATCH) {
      const batch = digests.slice(i, i + BATCH)
      const scores = await this.kv.command(['ZMSCORE', this.atimeKey, ...batch])
      // Without the shared times the oldest-looking object may be the hottest: no pass rather than a wrong one.
      if (!Array.isArray(scores)) throw new Error('cannot read the access times from Redis')
      scores.forEach((s: unknown, j) => {
        const ms = Number(s)
        if (s !== null && Number.isFinite(ms)) found.set(batch[j] as string, ms)
      })
    }
    return found
  }
}
