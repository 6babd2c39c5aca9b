import { checkManifest } from '../oci/manifest.js'
import { DOCKER_LIST, OCI_INDEX } from '../oci/media-types.js'
import { isValidDigest } from '../oci/reference.js'

/** A content descriptor as manifests carry them. */
export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  annotations?: Record<string, string>
}

export interface Platform {
  os?: string
  architecture?: string
  variant?: string
}

/** What a manifest refers to: child manifests (an index) or the blobs of one image, and its subject. */
export interface ManifestLinks {
  isIndex: boolean
  /** An index's manifests (after the platform filter). */
  children: Descriptor[]
  /** An image's config and layers (layers that may not be distributed are left out: they are fetched from elsewhere). */
  blobs: Descriptor[]
  /** The manifest this one is about (a signature's, an SBOM's image), for referrers. */
  subject?: Descriptor
}

/** `linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`; throws when it is not one. */
export function parsePlatform(text: string): Platform {
  const [os, architecture, variant, extra] = text.trim().split('/')
  if (!os || !architecture || extra !== undefined || !/^[a-z0-9._-]+$/.test(`${os}${architecture}${variant ?? ''}`)) {
    throw new Error(`${text}: a platform is OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64`)
  }
  return { os, architecture, ...(variant !== undefined ? { variant } : {}) }
}

/** Whether `p` is one of `wanted` (a variant asked for must match; arm64 without one is v8). */
export function platformMatches(p: Platform | undefined, wanted: Platform[]): boolean {
  if (!p) return false
  const variant = (x: Platform) => x.variant ?? (x.architecture === 'arm64' ? 'v8' : undefined)
  return wanted.some((w) => w.os === p.os && w.architecture === p.architecture && (w.variant === undefined || variant(w) === variant(p)))
}

export function formatPlatform(p: Platform | undefined): string {
  return p ? [p.os ?? '?', p.architecture ?? '?', ...(p.variant ? [p.variant] : [])].join('/') : 'unknown'
}

// Docker's non-distributable (Windows base) layers: fetched by clients from the URLs they name.
const FOREIGN = new Set([
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
])

/**
 * What a manifest body refers to. `platforms` (empty: all) keeps an index's children for those
 * platforms only. Throws when the body is not a manifest.
 */
export function manifestLinks(body: Buffer, mediaType: string | undefined, platforms: Platform[] = []): ManifestLinks {
  const check = checkManifest(body, mediaType)
  if (!check.ok) throw new Error(`not a manifest: ${check.reason}`)
  const doc = check.doc as {
    manifests?: Descriptor[]
    config?: Descriptor
    layers?: (Descriptor & { urls?: string[] })[]
    blobs?: Descriptor[]
    subject?: Descriptor
  }
  const sha = (d: Descriptor) => {
    if (!isValidDigest(d.digest)) throw new Error(`unsupported digest ${d.digest.slice(0, 80)}: only sha256 content can be verified`)
    return true
  }
  const subject = doc.subject
  if (check.mediaType === OCI_INDEX || check.mediaType === DOCKER_LIST) {
    const all = (doc.manifests ?? []).filter(sha)
    const children = platforms.length === 0 ? all : all.filter((c) => platformMatches(c.platform, platforms))
    return { isIndex: true, children, blobs: [], subject }
  }
  const blobs: Descriptor[] = []
  if (doc.config) blobs.push(doc.config)
  for (const l of doc.layers ?? []) if (!FOREIGN.has(l.mediaType) && !(l.urls && l.urls.length > 0)) blobs.push(l)
  for (const b of doc.blobs ?? []) blobs.push(b)
  blobs.forEach(sha)
  return { isIndex: false, children: [], blobs, subject }
}
