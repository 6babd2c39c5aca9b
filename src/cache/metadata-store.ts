import { createHash } from 'node:crypto'
import { mkdir, readFile, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Keyv } from 'keyv'
import { LRUCache } from 'lru-cache'
import type { Logger } from '../log.js'
import { isValidDigest, type Digest } from '../oci/reference.js'
import type { CachedToken, SharedTokenStore } from '../upstream/auth.js'
import { writeFileAtomic } from './blob-store.js'

export interface TagRecord {
  digest: string
  mediaType: string
  size: number
  /** When the upstream last confirmed this tag → digest (ms since epoch). */
  checkedAt: number
}

export interface ManifestInfo {
  mediaType: string
  size: number
}

export interface MetadataStoreOptions {
  /** `redis://…`: share tags and tokens between replicas; else keyv keeps them in memory. */
  redis?: string
  /** Prefix of every key, so several deployments can share one Redis. */
  prefix: string
  /** Longest wait for one keyv operation before falling back to the disk copy (ms). */
  opTimeoutMs?: number
  /** How many records the in-memory store keeps; the least recently used go first (their disk links stay). */
  memoryEntries?: number
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

/**
 * How long a tag record stays in keyv after the upstream last confirmed it. Every revalidation
 * writes it again, so only tags nobody pulls any more age out: Redis does not grow with every
 * tag ever seen, and the disk links keep each replica's own copy for offline use.
 */
export const TAG_RECORD_TTL_MS = 7 * 24 * 3600 * 1000
const MEMORY_ENTRIES = 100_000

/**
 * Tag → digest resolutions, manifest media types and upstream tokens. keyv holds the live copy
 * (in memory by default, Redis to share it between replicas); every tag is also written as a
 * small link file under the data directory, so a restart, or a replica whose Redis is gone,
 * keeps every tag that was pulled and can serve it offline. A keyv failure or a slow Redis is
 * never an error for a caller: reads miss, writes are dropped, the disk copy answers.
 */
export class MetadataStore implements SharedTokenStore {
  private readonly opTimeoutMs: number
  private lastErrorLog = 0
  private suppressedErrors = 0

  constructor(
    private readonly dataDir: string,
    private readonly kv: Keyv,
    private readonly log: Logger,
    opts: { opTimeoutMs?: number; shared?: boolean } = {},
  ) {
    this.opTimeoutMs = opts.opTimeoutMs ?? 1000
    this.shared = opts.shared ?? false
    kv.on('error', (err: unknown) => this.logKvError(err))
  }

  /** Whether other processes see what this store holds (Redis), so tokens are worth sharing through it. */
  readonly shared: boolean

  static async create(dataDir: string, opts: MetadataStoreOptions, log: Logger): Promise<MetadataStore> {
    // In memory there is nothing to serialise for: records are stored as they are (and never
    // mutated; callers replace them), which keeps a JSON round trip off every tag request.
    // The live copy is bounded; whatever it drops is read back from the disk link when asked for.
    if (!opts.redis) {
      const store = new MemoryRecords({ max: opts.memoryEntries ?? MEMORY_ENTRIES })
      return new MetadataStore(
        dataDir,
        new Keyv({ store, namespace: opts.prefix, serialize: undefined, deserialize: undefined }),
        log,
        opts,
      )
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
    const kv = new Keyv({ store, namespace: opts.prefix, useKeyPrefix: false })
    return new MetadataStore(dataDir, kv, log, { ...opts, shared: true })
  }

  /** One line per 10 s at most: an outage would otherwise log on every request. */
  private logKvError(err: unknown): void {
    const now = Date.now()
    if (now - this.lastErrorLog < 10_000) {
      this.suppressedErrors++
      return
    }
    this.log.warn({ err, suppressed: this.suppressedErrors }, 'metadata store (keyv) failed; serving from the disk copy')
    this.lastErrorLog = now
    this.suppressedErrors = 0
  }

  /** Runs a keyv operation with a deadline; undefined when it fails or takes too long. */
  private async kvOp<T>(op: () => Promise<T>): Promise<T | undefined> {
    // Only a remote store can hang; the in-memory one needs no deadline timer per call.
    if (!this.shared) {
      try {
        return await op()
      } catch (err) {
        this.logKvError(err)
        return undefined
      }
    }
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        this.logKvError(new Error(`metadata store did not answer within ${this.opTimeoutMs} ms`))
        resolve(undefined)
      }, this.opTimeoutMs)
    })
    try {
      return await Promise.race([op(), deadline])
    } catch (err) {
      this.logKvError(err)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  private tagKey(upstream: string, repo: string, tag: string): string {
    return `tag:${upstream}/${repo}:${tag}`
  }

  private tagPath(upstream: string, repo: string, tag: string): string {
    // Names and tags are grammar-checked before they get here: no component can be '..'.
    return join(this.dataDir, 'repositories', upstream, repo, '_tags', tag)
  }

  private manifestInfoPath(d: Digest): string {
    return join(this.dataDir, 'manifest-types', d.hex.slice(0, 2), d.hex)
  }

  async getTag(upstream: string, repo: string, tag: string): Promise<TagRecord | undefined> {
    const key = this.tagKey(upstream, repo, tag)
    let rec = (await this.kvOp(() => this.kv.get<TagRecord>(key))) ?? undefined
    if (isTagRecord(rec)) return rec
    try {
      rec = JSON.parse(await readFile(this.tagPath(upstream, repo, tag), 'utf8')) as TagRecord
    } catch {
      return undefined
    }
    if (!isTagRecord(rec)) return undefined
    await this.kvOp(() => this.kv.set(key, rec, TAG_RECORD_TTL_MS))
    return rec
  }

  async setTag(upstream: string, repo: string, tag: string, rec: TagRecord): Promise<void> {
    await this.kvOp(() => this.kv.set(this.tagKey(upstream, repo, tag), rec, TAG_RECORD_TTL_MS))
    await this.linkTag(upstream, repo, tag, rec)
  }

  /** Writes only the disk link: for a resolution another replica made, so this one keeps it without Redis. */
  async linkTag(upstream: string, repo: string, tag: string, rec: TagRecord): Promise<void> {
    const path = this.tagPath(upstream, repo, tag)
    await mkdir(dirname(path), { recursive: true })
    await writeFileAtomic(path, JSON.stringify(rec))
  }

  async deleteTag(upstream: string, repo: string, tag: string): Promise<void> {
    await this.kvOp(() => this.kv.delete(this.tagKey(upstream, repo, tag)))
    await unlink(this.tagPath(upstream, repo, tag)).catch(() => {})
  }

  async getManifestInfo(d: Digest): Promise<ManifestInfo | undefined> {
    try {
      const info = JSON.parse(await readFile(this.manifestInfoPath(d), 'utf8')) as ManifestInfo
      return typeof info.mediaType === 'string' ? info : undefined
    } catch {
      return undefined
    }
  }

  async setManifestInfo(d: Digest, info: ManifestInfo): Promise<void> {
    const path = this.manifestInfoPath(d)
    await mkdir(dirname(path), { recursive: true })
    await writeFileAtomic(path, JSON.stringify(info))
  }

  async deleteManifestInfo(d: Digest): Promise<void> {
    await unlink(this.manifestInfoPath(d)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }

  // Tokens live in keyv only (no disk copy: they are secrets and short-lived), under a hash of
  // realm + service + scope, with a TTL equal to their remaining lifetime.
  private tokenKey(key: string): string {
    return `token:${createHash('sha256').update(key).digest('hex')}`
  }

  async getToken(key: string): Promise<CachedToken | undefined> {
    const t = await this.kvOp(() => this.kv.get<CachedToken>(this.tokenKey(key)))
    return t && typeof t.token === 'string' && typeof t.expiresAt === 'number' ? t : undefined
  }

  async setToken(key: string, value: CachedToken): Promise<void> {
    const ttl = value.expiresAt - Date.now()
    if (ttl <= 0) return
    await this.kvOp(() => this.kv.set(this.tokenKey(key), value, ttl))
  }

  async deleteToken(key: string): Promise<void> {
    await this.kvOp(() => this.kv.delete(this.tokenKey(key)))
  }

  async close(): Promise<void> {
    // A graceful QUIT, bounded: with Redis gone it would wait for a reply that never comes.
    const graceful = await this.kvOp(async () => {
      await this.kv.disconnect()
      return true
    })
    if (!graceful && this.shared) {
      const store = this.kv.store as { disconnect(force?: boolean): Promise<void> }
      await store.disconnect(true).catch(() => {})
    }
  }
}

/** A record as this program writes it; anything else (a damaged file, a foreign key in a shared Redis) is no record. */
function isTagRecord(r: unknown): r is TagRecord {
  if (typeof r !== 'object' || r === null) return false
  const o = r as Partial<TagRecord>
  return typeof o.digest === 'string' && isValidDigest(o.digest) && typeof o.mediaType === 'string' && typeof o.checkedAt === 'number'
}
