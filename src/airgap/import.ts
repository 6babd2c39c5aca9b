import type { OpenParts } from '../app.js'
import { isPrivate } from '../config/registries.js'
import { checkManifest } from '../oci/manifest.js'
import { MAX_MANIFEST_SIZE } from '../oci/media-types.js'
import { parseDigest } from '../oci/reference.js'
import type { ArchiveContents } from './archive-read.js'
import { REF_NAME } from './export.js'
import { manifestLinks, type Descriptor } from './graph.js'
import { parseTarget, type ImageTarget } from './refs.js'

export interface ImportedImage {
  /** The reference as the archive names it. */
  name: string
  target?: ImageTarget
  digest?: string
  error?: string
  /** Manifests of an index left out of the archive (an export with --platform). */
  absentPlatforms?: number
}

interface Manifest {
  digest: string
  mediaType: string
  body: Buffer
}

/** containerd's and Docker 25's `docker save` name images here; ref.name then holds only the tag. */
const CONTAINERD_NAME = 'io.containerd.image.name'

/**
 * Turns what readArchive kept into images the mirror serves, from an OCI layout's index.json: each
 * named image whose content is whole gets its manifests recorded, then its tag. A manifest of an
 * index that the archive does not carry is left out (an export of some platforms); one that is
 * corrupt, or any missing or corrupt blob, fails that image only, named with the digest.
 */
export async function importOciImages(parts: OpenParts, contents: ArchiveContents): Promise<ImportedImage[]> {
  const index = contents.files.get('index.json') as Buffer
  let doc: { manifests?: (Descriptor & { annotations?: Record<string, string> })[] }
  try {
    doc = JSON.parse(index.toString('utf8')) as typeof doc
  } catch {
    throw new Error('index.json is not JSON')
  }
  const results: ImportedImage[] = []
  const unnamed: Descriptor[] = []
  const whole: { target: ImageTarget; digests: Set<string> }[] = []
  for (const entry of doc.manifests ?? []) {
    const name = entry.annotations?.[CONTAINERD_NAME] ?? entry.annotations?.[REF_NAME]
    if (name === undefined) {
      unnamed.push(entry)
      continue
    }
    const result: ImportedImage = { name }
    results.push(result)
    try {
      const target = parseFullName(name, parts)
      result.target = target
      const found = await collect(parts, contents, entry.digest, entry.mediaType)
      result.absentPlatforms = found.absent
      await recordImage(parts, target, entry.digest, found.manifests)
      result.digest = entry.digest
      whole.push({ target, digests: new Set(found.manifests.map((m) => m.digest)) })
    } catch (err) {
      result.error = (err as Error).message
    }
  }
  // Referrers without a tag (an export --with-referrers): kept with the images whose manifests they name.
  for (const entry of unnamed) {
    const found = await collect(parts, contents, entry.digest, entry.mediaType).catch(() => undefined)
    const subject = found && subjectOf(found.manifests.at(-1) as Manifest)
    if (!found || !subject) continue
    for (const w of whole) if (w.digests.has(subject)) await recordManifests(parts, w.target, found.manifests)
  }
  return results
}

function parseFullName(name: string, parts: OpenParts): ImageTarget {
  // A bare tag ("1.27", "latest") names no repository: skopeo's oci:DIR:TAG writes those.
  if (!name.includes('/') && !name.includes('@') && /^[\w][\w.-]*$/.test(name)) {
    throw new Error(
      `the archive names it only "${name}", not a repository: write it with a full reference (regmirror export, or skopeo copy … oci-archive:FILE:registry/repo:tag)`,
    )
  }
  return parseTarget(name, parts.registries)
}

/** The manifests under `digest`, children first, checked whole; `absent`: index children the archive left out. */
async function collect(
  parts: OpenParts,
  contents: ArchiveContents,
  digest: string,
  mediaType?: string,
): Promise<{ manifests: Manifest[]; absent: number }> {
  const out: Manifest[] = []
  let absent = 0
  const visit = async (d: string, type: string | undefined, root: boolean): Promise<void> => {
    if (out.some((m) => m.digest === d)) return
    const state = contents.blobs.get(d)
    if (state?.state === 'corrupt') throw new Error(`manifest ${d} is damaged in the archive: ${state.reason}`)
    const body = state ? await parts.store.readSmall(parseDigest(d), MAX_MANIFEST_SIZE).catch(() => undefined) : await cachedBody(parts, d)
    if (body === undefined) {
      if (root) throw new Error(`manifest ${d} is not in the archive`)
      absent++
      return
    }
    const check = checkManifest(body, type)
    if (!check.ok) throw new Error(`${d} is not a manifest: ${check.reason}`)
    const links = manifestLinks(body, check.mediaType)
    for (const c of links.children) await visit(c.digest, c.mediaType, false)
    for (const b of links.blobs) {
      const s = contents.blobs.get(b.digest)
      if (s?.state === 'corrupt') throw new Error(`blob ${b.digest} is damaged in the archive: ${s.reason}`)
      if (!s && (await parts.index.adopt(b.digest)) === undefined) throw new Error(`blob ${b.digest} is not in the archive`)
    }
    out.push({ digest: d, mediaType: check.mediaType, body })
  }
  await visit(digest, mediaType, true)
  return { manifests: out, absent }
}

async function cachedBody(parts: OpenParts, d: string): Promise<Buffer | undefined> {
  return (await parts.manifests.cached(parseDigest(d)))?.body
}

/**
 * Records a whole image: its manifests (their blobs are in), who may see its content, its
 * referrers, then the tag. A crash between these steps leaves content without a tag, never a tag
 * without content.
 */
export async function recordImage(parts: OpenParts, target: ImageTarget, root: string, manifests: Manifest[]): Promise<void> {
  await recordManifests(parts, target, manifests)
  const top = manifests.find((m) => m.digest === root) as Manifest
  if (target.tag !== undefined) {
    await parts.metadata.setTag(target.up.name, target.repo, target.tag, {
      digest: root,
      mediaType: top.mediaType,
      size: top.body.length,
      checkedAt: Date.now(),
    })
  }
}

async function recordManifests(parts: OpenParts, target: ImageTarget, manifests: Manifest[]): Promise<void> {
  const { up, repo } = target
  const priv = isPrivate(up)
  for (const m of manifests) {
    const d = parseDigest(m.digest)
    await parts.metadata.setManifestInfo(d, { mediaType: m.mediaType, size: m.body.length })
    await parts.index.adopt(m.digest)
    for (const b of [d, ...manifestLinks(m.body, m.mediaType).blobs.map((x) => parseDigest(x.digest))]) {
      await parts.links.record(up.name, repo, b, priv)
    }
    const subject = subjectOf(m)
    if (subject) {
      const doc = JSON.parse(m.body.toString('utf8')) as {
        artifactType?: string
        config?: { mediaType?: string }
        annotations?: Record<string, string>
      }
      const artifactType = doc.artifactType ?? doc.config?.mediaType
      await parts.referrers.add(up, repo, parseDigest(subject), [
        {
          mediaType: m.mediaType,
          digest: m.digest,
          size: m.body.length,
          ...(artifactType ? { artifactType } : {}),
          ...(doc.annotations ? { annotations: doc.annotations } : {}),
        },
      ])
    }
  }
}

function subjectOf(m: Manifest): string | undefined {
  try {
    const s = (JSON.parse(m.body.toString('utf8')) as { subject?: { digest?: unknown } }).subject?.digest
    return typeof s === 'string' ? s : undefined
  } catch {
    return undefined
  }
}
