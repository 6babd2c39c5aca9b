import { mkdir, readFile, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import KeyvRedis from '@keyv/redis'
import { Keyv } from 'keyv'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/reference.js'
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

/**
 * Tag → digest resolutions and manifest media types. keyv holds the live copy (in memory by
 * default, Redis to share it between replicas); every tag is also written as a small link
 * file under the data directory, so a restart, or a replica whose Redis is gone, keeps every
 * tag that was pulled and can serve it offline.
 */
export class MetadataStore {
  constructor(
    private readonly dataDir: string,
    private readonly kv: Keyv,
    private readonly log: Logger,
  ) {}

  static create(dataDir: string, opts: { redis?: string; prefix: string }, log: Logger): MetadataStore {
    const kv = opts.redis
      ? new Keyv({ store: new KeyvRedis(opts.redis), namespace: opts.prefix, useKeyPrefix: false })
      : new Keyv({ namespace: opts.prefix })
    kv.on('error', (err: unknown) => log.error({ err }, 'metadata store error'))
    return new MetadataStore(dataDir, kv, log)
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
    let rec: TagRecord | undefined
    try {
      rec = (await this.kv.get<TagRecord>(key)) ?? undefined
    } catch (err) {
      this.log.warn({ err }, 'metadata store read failed; using the disk copy')
    }
    if (rec) return rec
    try {
      rec = JSON.parse(await readFile(this.tagPath(upstream, repo, tag), 'utf8')) as TagRecord
    } catch {
      return undefined
    }
    if (typeof rec.digest !== 'string' || typeof rec.mediaType !== 'string') return undefined
    await this.kv.set(key, rec).catch(() => {})
    return rec
  }

  async setTag(upstream: string, repo: string, tag: string, rec: TagRecord): Promise<void> {
    try {
      await this.kv.set(this.tagKey(upstream, repo, tag), rec)
    } catch (err) {
      this.log.warn({ err }, 'metadata store write failed; the disk copy is kept')
    }
    const path = this.tagPath(upstream, repo, tag)
    await mkdir(dirname(path), { recursive: true })
    await writeFileAtomic(path, JSON.stringify(rec))
  }

  async deleteTag(upstream: string, repo: string, tag: string): Promise<void> {
    await this.kv.delete(this.tagKey(upstream, repo, tag)).catch(() => {})
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

  async close(): Promise<void> {
    await this.kv.disconnect().catch(() => {})
  }
}
