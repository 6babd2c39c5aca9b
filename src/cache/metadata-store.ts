import { mkdir, readFile, readdir, unlink } from 'node:fs/promises'
import { dirname, relative, sep } from 'node:path'
import { Kv, type KvOptions } from '../kv.js'
import type { Logger } from '../log.js'
import { isValidDigest, isValidTag, type Digest } from '../oci/reference.js'
import { writeFileAtomic } from './blob-store.js'
import { Layout } from './layout.js'

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

export type MetadataStoreOptions = KvOptions

/**
 * How long a tag record stays in keyv after the upstream last confirmed it. Every revalidation
 * writes it again, so only tags nobody pulls any more age out: Redis does not grow with every
 * tag ever seen, and the disk links keep each replica's own copy for offline use.
 */
export const TAG_RECORD_TTL_MS = 7 * 24 * 3600 * 1000

/**
 * Tag → digest resolutions and manifest media types. The kv holds the live copy of tag records
 * (in memory by default, Redis to share them between replicas); every tag is also written as a
 * small link file under the data directory (layout.ts), so a restart, or a replica whose Redis
 * is gone, keeps every tag that was pulled and can serve it offline.
 */
export class MetadataStore {
  constructor(
    private readonly layout: Layout,
    private readonly kv: Kv,
    /** Whether close() closes the kv too (it was opened for this store alone). */
    private readonly ownsKv = false,
  ) {}

  /** Whether other processes see the records (Redis). */
  get shared(): boolean {
    return this.kv.shared
  }

  /** A store with a kv of its own (tests, tools); the server shares one kv with the token store. */
  static async create(dataDir: string, opts: MetadataStoreOptions, log: Logger): Promise<MetadataStore> {
    return new MetadataStore(new Layout(dataDir), await Kv.open(opts, log), true)
  }

  private tagKey(upstream: string, repo: string, tag: string): string {
    return `tag:${upstream}/${repo}:${tag}`
  }

  async getTag(upstream: string, repo: string, tag: string): Promise<TagRecord | undefined> {
    const key = this.tagKey(upstream, repo, tag)
    const live = await this.kv.get<TagRecord>(key)
    if (isTagRecord(live)) return live
    let rec: unknown
    try {
      rec = JSON.parse(await readFile(this.layout.tagLink(upstream, repo, tag), 'utf8'))
    } catch {
      return undefined
    }
    if (!isTagRecord(rec)) return undefined
    await this.kv.set(key, rec, TAG_RECORD_TTL_MS)
    return rec
  }

  async setTag(upstream: string, repo: string, tag: string, rec: TagRecord): Promise<void> {
    await this.kv.set(this.tagKey(upstream, repo, tag), rec, TAG_RECORD_TTL_MS)
    await this.linkTag(upstream, repo, tag, rec)
  }

  /** Writes only the disk link: for a resolution another replica made, so this one keeps it without Redis. */
  async linkTag(upstream: string, repo: string, tag: string, rec: TagRecord): Promise<void> {
    const path = this.layout.tagLink(upstream, repo, tag)
    await mkdir(dirname(path), { recursive: true })
    await writeFileAtomic(path, JSON.stringify(rec))
  }

  /** Every tag link in the data directory: `export --all`. */
  *allTags(): Iterable<{ upstream: string; repo: string; tag: string }> {
    for (const path of this.layout.tagLinkFiles()) {
      const parts = relative(this.layout.repositoriesDir, path).split(sep)
      const at = parts.length - 2
      const tag = parts[at + 1] as string
      // A link's temp file (writeFileAtomic) sits beside it until renamed.
      if (at < 2 || parts[at] !== '_tags' || !isValidTag(tag) || tag.endsWith('.tmp')) continue
      yield { upstream: parts[0] as string, repo: parts.slice(1, at).join('/'), tag }
    }
  }

  /** The tags this data directory holds links for (what it can serve offline), sorted as distribution sorts them. */
  async listTags(upstream: string, repo: string): Promise<string[]> {
    const names = await readdir(this.layout.tagLinksDir(upstream, repo)).catch(() => [] as string[])
    return names.filter(isValidTag).sort()
  }

  /** Every upstream and repository this data directory holds tag links for: the catalog. */
  async repositories(): Promise<{ upstream: string; repo: string }[]> {
    return this.layout.repositoriesWithTags()
  }

  /**
   * Drops the records this process holds in memory, so tags are read from the disk links again
   * (another process wrote them). Records shared through Redis are the live copy and are kept.
   */
  async forgetLocal(): Promise<void> {
    await this.kv.clearLocal()
  }

  async deleteTag(upstream: string, repo: string, tag: string): Promise<void> {
    await this.kv.delete(this.tagKey(upstream, repo, tag))
    await unlink(this.layout.tagLink(upstream, repo, tag)).catch(() => {})
  }

  async getManifestInfo(d: Digest): Promise<ManifestInfo | undefined> {
    try {
      const info = JSON.parse(await readFile(this.layout.manifestType(d), 'utf8')) as ManifestInfo
      return typeof info.mediaType === 'string' ? info : undefined
    } catch {
      return undefined
    }
  }

  async setManifestInfo(d: Digest, info: ManifestInfo): Promise<void> {
    const path = this.layout.manifestType(d)
    await mkdir(dirname(path), { recursive: true })
    await writeFileAtomic(path, JSON.stringify(info))
  }

  async deleteManifestInfo(d: Digest): Promise<void> {
    await unlink(this.layout.manifestType(d)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }

  async close(): Promise<void> {
    if (this.ownsKv) await this.kv.close()
  }
}

/** A record as this program writes it; anything else (a damaged file, a foreign key in a shared Redis) is no record. */
function isTagRecord(r: unknown): r is TagRecord {
  if (typeof r !== 'object' || r === null) return false
  const o = r as Partial<TagRecord>
  return typeof o.digest === 'string' && isValidDigest(o.digest) && typeof o.mediaType === 'string' && typeof o.checkedAt === 'number'
}
