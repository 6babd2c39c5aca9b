import type { OpenParts } from '../app.js'
import { parseDigest } from '../oci/reference.js'
import { manifestLinks, type Descriptor, type Platform } from './graph.js'
import { formatRef, type ImageTarget } from './refs.js'

export interface CachedManifest {
  digest: string
  mediaType: string
  body: Buffer
}

/** An image as the cache holds it, in the order an archive needs it: blobs, then manifests (children before parents). */
export interface CachedImage {
  target: ImageTarget
  root?: CachedManifest
  manifests: CachedManifest[]
  blobs: Descriptor[]
  /** Other manifests to list by name in an archive's index.json: cosign's signature tags. */
  tagged: { ref: string; manifest: CachedManifest }[]
  /** What the image needs that the cache does not hold: a sentence each. */
  missing: string[]
}

const COSIGN_SUFFIXES = ['sig', 'att', 'sbom']

/**
 * Reads an image from the data directory alone (no upstream is asked, whatever the config): its
 * tag's digest, its manifests for the platforms asked for, every blob they name, and with
 * `withReferrers` its stored referrers and cosign tags. What is not there is listed in `missing`.
 */
export async function readCachedImage(
  parts: OpenParts,
  target: ImageTarget,
  platforms: Platform[],
  withReferrers: boolean,
): Promise<CachedImage> {
  const image: CachedImage = { target, manifests: [], blobs: [], tagged: [], missing: [] }
  const rootDigest = target.digest ?? (await parts.metadata.getTag(target.up.name, target.repo, target.tag as string))?.digest
  if (rootDigest === undefined) {
    image.missing.push(`${target.ref}: the tag is not in the cache`)
    return image
  }
  image.root = await collect(parts, image, rootDigest, platforms)
  if (withReferrers) {
    for (const m of [...image.manifests]) await collectReferrers(parts, image, m, platforms)
  }
  return image
}

/** Adds the manifest `digest` and everything under it; returns it, or undefined (listed as missing). */
async function collect(parts: OpenParts, image: CachedImage, digest: string, platforms: Platform[]): Promise<CachedManifest | undefined> {
  const known = image.manifests.find((m) => m.digest === digest)
  if (known) return known
  const m = await parts.manifests.cached(parseDigest(digest))
  if (!m) {
    image.missing.push(`${image.target.ref}: manifest ${digest} is not in the cache`)
    return undefined
  }
  const links = manifestLinks(m.body, m.mediaType, platforms)
  if (links.isIndex && links.children.length === 0 && platforms.length > 0) {
    image.missing.push(`${image.target.ref}: the index has no manifest for the platforms asked for`)
  }
  for (const c of links.children) await collect(parts, image, c.digest, platforms)
  for (const b of links.blobs) {
    if (image.blobs.some((x) => x.digest === b.digest)) continue
    const size = await parts.index.adopt(b.digest)
    if (size === undefined) image.missing.push(`${image.target.ref}: blob ${b.digest} is not in the cache`)
    else image.blobs.push({ ...b, size })
  }
  // After its children: an archive read front to back has what a manifest names before the manifest.
  image.manifests.push(m)
  return m
}

async function collectReferrers(parts: OpenParts, image: CachedImage, m: CachedManifest, platforms: Platform[]): Promise<void> {
  const { up, repo } = image.target
  for (const r of await parts.referrers.cached(up, repo, parseDigest(m.digest))) await collect(parts, image, r.digest, platforms)
  const hex = m.digest.slice('sha256:'.length)
  for (const suffix of COSIGN_SUFFIXES) {
    const tag = `sha256-${hex}.${suffix}`
    const rec = await parts.metadata.getTag(up.name, repo, tag)
    if (!rec) continue
    const sig = await collect(parts, image, rec.digest, platforms)
    if (sig) image.tagged.push({ ref: formatRef(up.name, repo, tag), manifest: sig })
  }
}

/** Every image the data directory holds a tag for, whose upstream is configured: `export --all`. */
export async function allCachedTargets(parts: OpenParts): Promise<ImageTarget[]> {
  const out: ImageTarget[] = []
  for (const { upstream, repo, tag } of parts.metadata.allTags()) {
    const up = parts.registries.byName(upstream)
    // cosign's tags travel with their image (--with-referrers), not as images of their own.
    if (!up || up.name !== upstream || /^sha256-[a-f0-9]{64}\.(sig|att|sbom)$/.test(tag)) continue
    out.push({ up, repo, tag, ref: formatRef(up.name, repo, tag) })
  }
  return out
}
