import { randomBytes } from 'node:crypto'
import { readdirSync, statSync, type Dirent } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Digest } from '../oci/reference.js'

/**
 * The data directory, the one place its paths are built:
 *
 * ```
 * <dataDir>/
 *   blobs/sha256/<ab>/<ab…64 hex>        verified content, blobs and manifests alike; the name is its sha256
 *   tmp/<64 hex>.<12 hex>.tmp            downloads in progress; cleared at start-up, never content
 *   repositories/<upstream>/<repo…>/_tags/<tag>
 *                                        tag link: the TagRecord (digest, media type, size, checkedAt) as JSON
 *   repositories/<upstream>/<repo…>/_referrers/<64 hex>
 *                                        the last referrers list (OCI index) of that subject digest
 *   repositories/<upstream>/<repo…>/_content/<64 hex>
 *                                        (empty) this private upstream confirmed this repository holds the digest
 *   restricted/<ab>/<ab…64 hex>          (empty) only private upstreams brought the digest: a public one must confirm it
 *   manifest-types/<ab>/<ab…64 hex>      {mediaType, size} of a stored manifest; eviction removes it first,
 *                                        so a tag link with neither content nor this record was evicted
 *   state/pins.json                      images pinned by `preload --pin` / `import --pin` (config pins are not here)
 *   state/changed                        rewritten by preload and import when they add content, so a mirror running
 *                                        on this directory re-reads its pins and tag links
 * ```
 *
 * Every path is built from a parsed digest or from names and tags that passed the reference
 * grammar (oci/reference.ts), so none can leave the directory. Written by BlobStore (content,
 * tmp), MetadataStore (tag links, manifest types); read back by the LRU index's scan and by
 * `regmirror verify`. docs/architecture.md has the same picture.
 */
export class Layout {
  readonly blobsDir: string
  readonly tmpDir: string
  readonly repositoriesDir: string
  readonly manifestTypesDir: string
  readonly restrictedDir: string
  readonly stateDir: string

  constructor(readonly dataDir: string) {
    this.blobsDir = join(dataDir, 'blobs', 'sha256')
    this.tmpDir = join(dataDir, 'tmp')
    this.repositoriesDir = join(dataDir, 'repositories')
    this.manifestTypesDir = join(dataDir, 'manifest-types')
    this.restrictedDir = join(dataDir, 'restricted')
    this.stateDir = join(dataDir, 'state')
  }

  /** A blob's path under blobsDir, as segments: what a front server's X-Accel-Redirect location aliases (`<ab>/<hex>`). */
  static blobUnder(d: Digest): [string, string] {
    return [d.hex.slice(0, 2), d.hex]
  }

  blob(d: Digest): string {
    return join(this.blobsDir, ...Layout.blobUnder(d))
  }

  blobPrefixDir(d: Digest): string {
    return join(this.blobsDir, d.hex.slice(0, 2))
  }

  /** A fresh temp path for a download of `d` (several may run for one digest, each its own file). */
  tmpFor(d: Digest): string {
    return join(this.tmpDir, `${d.hex}.${randomBytes(6).toString('hex')}.tmp`)
  }

  tagLink(upstream: string, repo: string, tag: string): string {
    return join(this.tagLinksDir(upstream, repo), tag)
  }

  /** The directory of a repository's tag links: its entries are the tags. */
  tagLinksDir(upstream: string, repo: string): string {
    return join(this.repositoriesDir, upstream, repo, '_tags')
  }

  /** The last referrers list (an OCI index) of `subject` in `repo`, for the referrers API offline. */
  referrersFile(upstream: string, repo: string, subject: Digest): string {
    return join(this.repositoriesDir, upstream, repo, '_referrers', subject.hex)
  }

  /** The record that `upstream` confirmed `repo` holds `d` (private content, links.ts). */
  contentLink(upstream: string, repo: string, d: Digest): string {
    return join(this.repositoriesDir, upstream, repo, '_content', d.hex)
  }

  /** The record that only private upstreams brought `d`. */
  restrictedMark(d: Digest): string {
    return join(this.restrictedDir, d.hex.slice(0, 2), d.hex)
  }

  /** Pins added by the tools, kept with the data they pin. */
  get pinsFile(): string {
    return join(this.stateDir, 'pins.json')
  }

  /** Touched when the tools added content; a running mirror watches it. */
  get changedFile(): string {
    return join(this.stateDir, 'changed')
  }

  manifestType(d: Digest): string {
    return join(this.manifestTypesDir, d.hex.slice(0, 2), d.hex)
  }

  /**
   * Every file under blobs/, sorted into committed content (`<2 hex>/<64 hex starting with
   * them>`, a regular file) and everything else. Synchronous on purpose: it runs before the
   * server listens, and one stat after another is 2-3x faster than 100,000 round trips through
   * libuv's thread pool (bench/startup.ts).
   */
  scanBlobs(): BlobScan {
    const scan: BlobScan = { blobs: [], strays: [] }
    for (const prefix of entries(this.blobsDir)) {
      const dir = join(this.blobsDir, prefix.name)
      if (!PREFIX_RE.test(prefix.name) || !prefix.isDirectory()) {
        scan.strays.push({ path: dir, temp: false })
        continue
      }
      for (const e of entries(dir)) {
        const path = join(dir, e.name)
        if (!HEX64_RE.test(e.name) || !e.name.startsWith(prefix.name)) {
          scan.strays.push({ path, temp: e.name.endsWith('.tmp') })
          continue
        }
        const st = statSync(path, { throwIfNoEntry: false })
        if (st?.isFile()) scan.blobs.push({ digest: `sha256:${e.name}`, hex: e.name, path, size: st.size, mtimeMs: st.mtimeMs })
        else if (st) scan.strays.push({ path, temp: false })
      }
    }
    return scan
  }

  /** Every file under repositories/: tag links, and temp files a crash left beside them. */
  tagLinkFiles(): string[] {
    return files(this.repositoriesDir)
  }

  /**
   * The repositories that hold at least one tag link, per upstream directory: what the catalog lists.
   * Repository name components never start with `_` (the name grammar), so `_tags`, `_referrers` and
   * `_content` are never taken for a component, and the walk does not descend into them.
   */
  async repositoriesWithTags(): Promise<{ upstream: string; repo: string }[]> {
    const out: { upstream: string; repo: string }[] = []
    const walk = async (upstream: string, parts: string[]): Promise<void> => {
      const dir = join(this.repositoriesDir, upstream, ...parts)
      const list = await readdir(dir, { withFileTypes: true }).catch(() => [] as Dirent[])
      for (const e of list) {
        if (!e.isDirectory()) continue
        if (e.name === '_tags') {
          const tags = await readdir(join(dir, e.name)).catch(() => [] as string[])
          if (parts.length > 0 && tags.some((t) => !t.endsWith('.tmp'))) out.push({ upstream, repo: parts.join('/') })
        } else if (!e.name.startsWith('_')) await walk(upstream, [...parts, e.name])
      }
    }
    for (const e of entries(this.repositoriesDir)) if (e.isDirectory()) await walk(e.name, [])
    return out
  }

  /** Every file under manifest-types/. */
  manifestTypeFiles(): string[] {
    return files(this.manifestTypesDir)
  }

  /** Every entry of tmp/. */
  tmpFiles(): string[] {
    return entries(this.tmpDir).map((e) => join(this.tmpDir, e.name))
  }
}

export interface StoredBlob {
  digest: string
  hex: string
  path: string
  size: number
  mtimeMs: number
}

export interface BlobScan {
  blobs: StoredBlob[]
  /** Files and directories under blobs/ that are not content (`temp`: named like a temp file). */
  strays: { path: string; temp: boolean }[]
}

const PREFIX_RE = /^[a-f0-9]{2}$/
const HEX64_RE = /^[a-f0-9]{64}$/

/** Whether a file name is a content name (64 lower-case hex). */
export function isContentName(name: string): boolean {
  return HEX64_RE.test(name)
}

function entries(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
  } catch {
    return []
  }
}

/** Every file below `dir`, not following links. */
function files(dir: string): string[] {
  const out: string[] = []
  for (const e of entries(dir)) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...files(p))
    else out.push(p)
  }
  return out
}
