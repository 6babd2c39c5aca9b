import { mkdir, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from '../log.js'
import { MAX_MANIFEST_SIZE } from '../oci/media-types.js'
import { parseDigest, parseImageRef } from '../oci/reference.js'
import type { Registries } from '../config/registries.js'
import { writeFileAtomic, type BlobStore } from '../cache/blob-store.js'
import type { Layout } from '../cache/layout.js'
import type { CacheIndex } from '../cache/lru-index.js'
import type { MetadataStore } from '../cache/metadata-store.js'

export interface PinRef {
  /** As configured, for logs. */
  ref: string
  /** Where the pin comes from: the configuration, or the data directory (`preload --pin`, `import --pin`). */
  origin: PinOrigin
  upstream: string
  /** Upstream-side name (Docker Hub's `library/` applied). */
  repo: string
  tag?: string
  digest?: string
}

/** `UPSTREAM/REPO:TAG`, `UPSTREAM/REPO@sha256:…` or both; undefined when the upstream is not configured. */
export function parsePin(ref: string, registries: Registries, origin: PinOrigin = 'config'): PinRef | undefined {
  const r = parseImageRef(ref)
  const up = r && registries.byName(r.registry)
  if (!r || !up) return undefined
  return { ref, origin, upstream: up.name, repo: registries.normalizeRepo(up, r.repo), tag: r.tag, digest: r.digest }
}

export type PinOrigin = 'config' | 'data'

/** One pin as `regmirror pins` shows it. */
export interface PinStatus {
  ref: string
  origin: PinOrigin
  /** The digests it covers that are cached, and their bytes. */
  cached: number
  bytes: number
  /** The root digest it resolved to, when known. */
  root?: string
}

/**
 * Pinned images: their manifests and every blob they reference are never evicted. A pin is
 * known by its root digest (the tag's current digest, or the digest given); what it covers is
 * found by walking the manifests on disk, and grows as child manifests arrive, so pinning
 * works before the image was ever pulled. A pinned tag that moves pins the new image and
 * releases the old one.
 */
export class Pins {
  private readonly refs: PinRef[] = []
  /** Per pin: the digests it covers. */
  private readonly covered = new Map<PinRef, Set<string>>()

  constructor(
    private readonly registries: Registries,
    private readonly store: BlobStore,
    private readonly metadata: MetadataStore,
    private readonly index: CacheIndex,
    private readonly log: Logger,
  ) {}

  /** Adds pins and resolves them from what is on disk. Call before the index first evicts. */
  async add(refs: string[], origin: PinOrigin = 'config'): Promise<void> {
    for (const r of refs) {
      const p = parsePin(r, this.registries, origin)
      if (!p) {
        this.log.warn({ pin: r, origin }, 'pin names no configured upstream or is not an image reference; ignored')
        continue
      }
      this.refs.push(p)
      this.covered.set(p, new Set())
      const root = await this.rootOf(p)
      if (root !== undefined) await this.cover(p, root)
    }
    this.apply()
  }

  /** Replaces the data directory's pins with what its pin file says now (at start, and when the tools changed it). */
  async loadPersisted(): Promise<void> {
    for (const p of this.refs.filter((r) => r.origin === 'data')) {
      this.refs.splice(this.refs.indexOf(p), 1)
      this.covered.delete(p)
    }
    await this.add(await readPinFile(this.store.layout), 'data')
  }

  /** Every pin, with what of it is cached. */
  async list(): Promise<PinStatus[]> {
    return Promise.all(
      this.refs.map(async (p) => {
        const set = this.covered.get(p) ?? new Set<string>()
        let cached = 0
        let bytes = 0
        for (const d of set) {
          const size = this.index.sizeOf(d)
          if (size === undefined) continue
          cached++
          bytes += size
        }
        return { ref: p.ref, origin: p.origin, cached, bytes, root: await this.rootOf(p) }
      }),
    )
  }

  private async rootOf(p: PinRef): Promise<string | undefined> {
    if (p.digest !== undefined || p.tag === undefined) return p.digest
    return (await this.metadata.getTag(p.upstream, p.repo, p.tag))?.digest
  }

  /** A tag was resolved: a pinned tag now covers this digest's image (and no longer its old one). */
  async onTag(upstream: string, repo: string, tag: string, digest: string): Promise<void> {
    let changed = false
    for (const p of this.refs) {
      if (p.digest !== undefined || p.tag !== tag || p.repo !== repo || p.upstream !== upstream) continue
      if (this.covered.get(p)?.has(digest)) continue
      this.covered.set(p, new Set())
      await this.cover(p, digest)
      changed = true
    }
    if (changed) this.apply()
  }

  /** A manifest was stored: if a pin covers it, the pin now covers what it references. */
  onManifest(digest: string, body: Buffer): void {
    let changed = false
    for (const set of this.covered.values()) {
      if (!set.has(digest)) continue
      for (const d of references(body)) {
        if (!set.has(d)) {
          set.add(d)
          changed = true
        }
      }
    }
    if (changed) this.apply()
  }

  /** Every pinned digest. */
  digests(): Set<string> {
    const all = new Set<string>()
    for (const set of this.covered.values()) for (const d of set) all.add(d)
    return all
  }

  private async cover(p: PinRef, root: string): Promise<void> {
    const set = this.covered.get(p) as Set<string>
    const queue = [root]
    while (queue.length > 0) {
      const d = queue.pop() as string
      if (set.has(d)) continue
      set.add(d)
      const digest = parseDigest(d)
      // Layers can be gigabytes: only something manifest-sized is read. Missing content is
      // filled in by onManifest when it arrives.
      const size = await this.store.size(digest)
      if (size === undefined || size > MAX_MANIFEST_SIZE) continue
      const body = await this.store.readAll(digest).catch(() => Buffer.alloc(0))
      queue.push(...references(body))
    }
  }

  private apply(): void {
    this.index.setPinned(this.digests())
  }
}

/** Digests a manifest or index refers to; nothing for a blob or anything that is not one. */
export function references(body: Buffer): string[] {
  // Layers are not JSON; skip parsing anything that cannot be a manifest.
  if (body.length === 0 || body.length > MAX_MANIFEST_SIZE || body[0] !== 0x7b) return []
  let doc: unknown
  try {
    doc = JSON.parse(body.toString('utf8'))
  } catch {
    return []
  }
  if (typeof doc !== 'object' || doc === null) return []
  const o = doc as { manifests?: unknown; config?: unknown; layers?: unknown }
  const out: string[] = []
  const take = (x: unknown) => {
    const d = (x as { digest?: unknown } | null)?.digest
    if (typeof d === 'string' && /^sha256:[a-f0-9]{64}$/.test(d)) out.push(d)
  }
  if (Array.isArray(o.manifests)) o.manifests.forEach(take)
  if (o.config !== undefined) take(o.config)
  if (Array.isArray(o.layers)) o.layers.forEach(take)
  return out
}

/** The references in the data directory's pin file (none when there is no file; a damaged one is reported). */
export async function readPinFile(layout: Layout): Promise<string[]> {
  let text: string
  try {
    text = await readFile(layout.pinsFile, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const doc = JSON.parse(text) as { pins?: unknown }
  if (!Array.isArray(doc.pins) || !doc.pins.every((x) => typeof x === 'string')) throw new Error(`${layout.pinsFile}: not a pin file`)
  return doc.pins as string[]
}

/** Adds and removes references in the pin file (written whole, atomically); returns the new list. */
export async function updatePinFile(layout: Layout, change: { add?: string[]; remove?: string[] }): Promise<string[]> {
  const now = await readPinFile(layout)
  const drop = new Set(change.remove ?? [])
  const next = now.filter((r) => !drop.has(r))
  for (const r of change.add ?? []) if (!next.includes(r)) next.push(r)
  await mkdir(dirname(layout.pinsFile), { recursive: true })
  await writeFileAtomic(layout.pinsFile, JSON.stringify({ pins: next }, null, 2) + '\n')
  return next
}
