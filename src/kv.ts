import { Keyv } from 'keyv'
import { LRUCache } from 'lru-cache'
import type { Logger } from './log.js'

export interface KvOptions {
  /** `redis://…`: shared between replicas; else keyv keeps records in this process's memory. */
  redis?: string
  /** Prefix of every key, so several deployments can share one Redis. */
  prefix: string
  /** Longest wait for one operation before it counts as failed (ms). */
  opTimeoutMs?: number
  /** How many records the in-memory store keeps; the least recently used go first. */
  memoryEntries?: number
  /**
   * Worker processes without Redis: a store that forwards to the primary's in-memory one (one copy
   * for all workers, src/workers/). Cleared like the in-memory store when the data directory changes.
   */
  forward?: ForwardStore
}

/** A keyv store (Map-like, async) kept by another process. */
export interface ForwardStore {
  get(key: string): Promise<unknown>
  set(key: string, value: unknown, ttl?: number): Promise<unknown>
  delete(key: string): Promise<boolean>
  clear(): Promise<void>
}

/**
 * lru-cache as a keyv store. keyv passes its TTL as a number where lru-cache expects an options
 * object (and writes into it); keyv checks expiry itself from the record, so the TTL is not needed here.
 */
class MemoryRecords extends LRUCache<string, object> {
  override set(key: string, value: object): this {
    return super.set(key, value)
  }
}

const MEMORY_ENTRIES = 100_000

/** The in-memory store's records, for a process that keeps them for others (the primary of workers). */
export function memoryRecords(entries = MEMORY_ENTRIES): Map<string, object> {
  return new MemoryRecords({ max: entries }) as unknown as Map<string, object>
}

/** The one method of the Redis client that command() uses. */
interface RawRedis {
  sendCommand(args: string[]): Promise<unknown>
}

/**
 * The key-value store behind tag records and tokens: keyv in memory, or over Redis to share it
 * between replicas. A failure or a slow Redis is never an error for a caller: a read misses, a
 * write is dropped, each after at most `opTimeoutMs`, and callers fall back to what they have
 * (the disk links, a new token). One connection serves every user of it.
 */
export class Kv {
  private readonly opTimeoutMs: number
  private lastErrorLog = 0
  private connecting: Promise<RawRedis> | undefined
  private suppressedErrors = 0

  private constructor(
    private readonly keyv: Keyv,
    private readonly log: Logger,
    /** Whether other processes see what this store holds (Redis). */
    readonly shared: boolean,
    opTimeoutMs: number,
    /** Cleared by clearLocal although shared: the primary's store, which only this machine's workers see. */
    private readonly forwarded = false,
  ) {
    this.opTimeoutMs = opTimeoutMs
    keyv.on('error', (err: unknown) => this.logError(err))
  }

  static async open(opts: KvOptions, log: Logger): Promise<Kv> {
    const timeout = opts.opTimeoutMs ?? 1000
    // In memory there is nothing to serialise for: records are stored as they are (and never
    // mutated; callers replace them), which keeps a JSON round trip off every tag request.
    if (!opts.redis && opts.forward) {
      // Stored as they are, as in memory: the channel to the primary copies them (structured clone).
      return new Kv(
        new Keyv({ store: opts.forward, namespace: opts.prefix, serialize: undefined, deserialize: undefined }),
        log,
        true,
        timeout,
        true,
      )
    }
    if (!opts.redis) {
      const store = new MemoryRecords({ max: opts.memoryEntries ?? MEMORY_ENTRIES })
      return new Kv(new Keyv({ store, namespace: opts.prefix, serialize: undefined, deserialize: undefined }), log, false, timeout)
    }
    // Loaded only when configured: the Redis client adds ~10 MiB to every process that never uses it.
    const { default: KeyvRedis } = await import('@keyv/redis')
    const store = new KeyvRedis(
      {
        url: opts.redis,
        // Without this, commands issued while Redis is down wait in a queue until it is back:
        // a tag request would hang instead of falling back to the disk link.
        disableOfflineQueue: true,
        socket: { connectTimeout: 2000, reconnectStrategy: (attempt: number) => Math.min(100 * 2 ** attempt, 2000) },
      },
      { connectionTimeout: 2000 },
    )
    return new Kv(new Keyv({ store, namespace: opts.prefix, useKeyPrefix: false }), log, true, timeout)
  }

  get<T>(key: string): Promise<T | undefined> {
    return this.op(async () => (await this.keyv.get<T>(key)) ?? undefined)
  }

  async set(key: string, value: unknown, ttlMs: number): Promise<void> {
    await this.op(() => this.keyv.set(key, value, ttlMs))
  }

  async delete(key: string): Promise<void> {
    await this.op(() => this.keyv.delete(key))
  }

  /**
   * One raw Redis command (`['SET', key, value, 'NX', 'PX', '30000']`), for what keyv has no word for: the fill
   * leases and shared access times of the bucket tier (storage/). Its reply (null for Redis' nil); undefined when
   * the store is not Redis, or Redis failed or was slow, like every other operation here. Keys are the caller's:
   * no namespace is added.
   */
  async command(args: string[]): Promise<unknown> {
    if (!this.redis) return undefined
    const store = this.keyv.store as { getClient(): Promise<RawRedis> }
    // One connect for concurrent first callers: the client counts as open (and is handed out) before it is
    // ready, and without the offline queue a command sent then fails.
    return this.op(async () =>
      (await (this.connecting ??= store.getClient().finally(() => (this.connecting = undefined)))).sendCommand(args),
    )
  }

  /** Whether this is Redis (shared between machines), not memory here or in the primary of workers. */
  get redis(): boolean {
    return this.shared && !this.forwarded
  }

  /** Empties an in-memory store (tokens are fetched again, tags read again from disk); a shared one is left alone. */
  async clearLocal(): Promise<void> {
    if (!this.shared || this.forwarded) await this.op(() => this.keyv.clear())
  }

  async close(): Promise<void> {
    // A graceful QUIT, bounded: with Redis gone it would wait for a reply that never comes.
    const graceful = await this.op(async () => {
      await this.keyv.disconnect()
      return true
    })
    if (!graceful && this.shared) {
      const store = this.keyv.store as { disconnect(force?: boolean): Promise<void> }
      await store.disconnect(true).catch(() => {})
    }
  }

  /** One line per 10 s at most: an outage would otherwise log on every request. */
  private logError(err: unknown): void {
    const now = Date.now()
    if (now - this.lastErrorLog < 10_000) {
      this.suppressedErrors++
      return
    }
    this.log.warn({ err, suppressed: this.suppressedErrors }, 'metadata store (keyv) failed; serving from the disk copy')
    this.lastErrorLog = now
    this.suppressedErrors = 0
  }

  /** Runs an operation with a deadline; undefined when it fails or takes too long. */
  private async op<T>(op: () => Promise<T>): Promise<T | undefined> {
    // Only a remote store can hang; the in-memory one needs no deadline timer per call.
    if (!this.shared) {
      try {
        return await op()
      } catch (err) {
        this.logError(err)
        return undefined
      }
    }
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        this.logError(new Error(`metadata store did not answer within ${this.opTimeoutMs} ms`))
        resolve(undefined)
      }, this.opTimeoutMs)
    })
    try {
      return await Promise.race([op(), deadline])
    } catch (err) {
      this.logError(err)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }
}
