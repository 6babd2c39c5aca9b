import { manifestLinks, type Descriptor, type Platform } from './graph.js'
import type { Progress } from './progress.js'
import type { ImageTarget } from './refs.js'
import type { FetchedManifest, ImageSource } from './sources.js'

export interface PreloadOptions {
  /** Keep only these platforms of an index (the index itself is kept); empty: all. */
  platforms: Platform[]
  withReferrers: boolean
  /** Blobs fetched at once, over all images. */
  concurrency: number
}

export interface ImageResult {
  target: ImageTarget
  /** The digest the reference resolved to. */
  digest?: string
  error?: string
  blobs: number
  fetchedBytes: number
  cachedBytes: number
}

// cosign's tags for an image's signature, attestations and SBOM (before OCI referrers).
const COSIGN_SUFFIXES = ['sig', 'att', 'sbom']

/**
 * Fetches images into a cache: each reference's manifest, the manifests of the platforms asked for,
 * and every blob they name, `concurrency` blobs at a time over all images. What is cached already is
 * not fetched again, and an interrupted blob resumes (the fills do both), so a rerun picks up where
 * one stopped. One image failing does not stop the others; each result says what happened.
 */
export async function preload(
  source: ImageSource,
  targets: ImageTarget[],
  opts: PreloadOptions,
  progress: Progress,
): Promise<ImageResult[]> {
  const limit = limiter(Math.max(1, opts.concurrency))
  // Images are walked a few at a time: their blobs share the limiter, the bars stay readable.
  const images = limiter(Math.max(1, Math.min(opts.concurrency, 4)))
  return Promise.all(targets.map((t) => images(() => preloadOne(source, t, opts, progress, limit))))
}

async function preloadOne(
  source: ImageSource,
  target: ImageTarget,
  opts: PreloadOptions,
  progress: Progress,
  limit: Limiter,
): Promise<ImageResult> {
  const result: ImageResult = { target, blobs: 0, fetchedBytes: 0, cachedBytes: 0 }
  progress.imageStart(target.ref)
  try {
    const root = await source.manifest(target, target.digest ?? (target.tag as string))
    if (target.digest !== undefined && root.digest !== target.digest) throw new Error(`resolved to ${root.digest}, not ${target.digest}`)
    result.digest = root.digest
    const blobs = new Map<string, Descriptor>()
    const manifests = await walk(source, target, root, opts.platforms, blobs)
    if (opts.withReferrers) {
      for (const m of [...manifests]) await addReferrers(source, target, m, opts.platforms, blobs, manifests)
    }
    progress.imagePlanned(
      target.ref,
      blobs.size,
      [...blobs.values()].reduce((n, b) => n + b.size, 0),
    )
    const failures: string[] = []
    await Promise.all(
      [...blobs.values()].map((b) =>
        limit(async () => {
          try {
            const how = await source.blob(target, b, (n) => progress.bytes(target.ref, n))
            result.blobs++
            if (how === 'cached') result.cachedBytes += b.size
            else result.fetchedBytes += b.size
            progress.blobDone(target.ref, b.digest, b.size, how === 'cached')
          } catch (err) {
            failures.push(`${b.digest}: ${(err as Error).message}`)
          }
        }),
      ),
    )
    if (failures.length > 0) throw new Error(failures.length === 1 ? failures[0] : `${failures.length} blobs failed; first ${failures[0]}`)
    progress.imageDone(target.ref)
  } catch (err) {
    result.error = (err as Error).message
    progress.imageDone(target.ref, result.error)
  }
  return result
}

/** The manifests under `root` (itself included) for the platforms asked for; their blobs go into `blobs`. */
async function walk(
  source: ImageSource,
  target: ImageTarget,
  root: FetchedManifest,
  platforms: Platform[],
  blobs: Map<string, Descriptor>,
): Promise<FetchedManifest[]> {
  const seen: FetchedManifest[] = []
  const queue = [root]
  for (let m = queue.shift(); m; m = queue.shift()) {
    seen.push(m)
    const links = manifestLinks(m.body, m.mediaType, platforms)
    for (const b of links.blobs) blobs.set(b.digest, b)
    for (const c of links.children) {
      if (seen.some((s) => s.digest === c.digest) || queue.some((q) => q.digest === c.digest)) continue
      queue.push(await source.manifest(target, c.digest))
    }
    if (links.isIndex && links.children.length === 0 && platforms.length > 0) {
      throw new Error(
        `no manifest for ${platforms.map((p) => [p.os, p.architecture, p.variant].filter(Boolean).join('/')).join(', ')} in the index`,
      )
    }
  }
  return seen
}

/** Signatures, SBOMs and attestations of `m`: the referrers API (or its tag fallback) and cosign's tags. */
async function addReferrers(
  source: ImageSource,
  target: ImageTarget,
  m: FetchedManifest,
  platforms: Platform[],
  blobs: Map<string, Descriptor>,
  manifests: FetchedManifest[],
): Promise<void> {
  const found: FetchedManifest[] = []
  for (const r of await source.referrers(target, m.digest)) found.push(await source.manifest(target, r.digest))
  const hex = m.digest.slice('sha256:'.length)
  for (const suffix of COSIGN_SUFFIXES) {
    // Most images have none of these tags: a miss is the normal answer.
    const tagged = await source.manifest(target, `sha256-${hex}.${suffix}`).catch(() => undefined)
    if (tagged) found.push(tagged)
  }
  for (const f of found) {
    if (manifests.some((x) => x.digest === f.digest)) continue
    manifests.push(...(await walk(source, target, f, platforms, blobs)))
  }
}

type Limiter = <T>(fn: () => Promise<T>) => Promise<T>

/** Runs at most `n` of the functions given to it at once, in the order given. */
function limiter(n: number): Limiter {
  let active = 0
  const waiting: (() => void)[] = []
  return async (fn) => {
    // A finishing task hands its slot to the next waiter, so a newcomer cannot slip in between.
    if (active >= n) await new Promise<void>((r) => waiting.push(r))
    else active++
    try {
      return await fn()
    } finally {
      const next = waiting.shift()
      if (next) next()
      else active--
    }
  }
}
