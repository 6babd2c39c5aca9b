import { RegmirrorError } from '../errors.js'

// Grammar from the OCI distribution-spec ("Pulling manifests") and distribution/reference.
// Checked before any name, tag or digest is used, so nothing built from raw input can
// escape the cache directory: no component can be '.', '..', empty, or contain '/'.
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*'
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`)
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/
const SHA256_HEX_RE = /^[a-f0-9]{64}$/

// A registry host as distribution/reference's "domain" (a name or address, optional port); upstream
// names in image references follow it too.
const HOST_RE = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?$/i

/** Whether `s` is a registry host: `ghcr.io`, `registry.internal:5000`, `127.0.0.1:5000`, `localhost`. */
export function isHostName(s: string): boolean {
  return HOST_RE.test(s)
}

/**
 * Whether a reference's first component names a registry, by Docker's grammar: a host with a dot or a
 * port, or `localhost`. Anything else (`library`, `myorg`) is a Docker Hub namespace to every client.
 */
export function namesRegistry(first: string): boolean {
  return (first.includes('.') || first.includes(':') || first === 'localhost') && isHostName(first)
}

/** distribution's limit for the whole repository name. */
export const MAX_NAME_LENGTH = 255

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name)
}

export function assertName(name: string): string {
  if (!isValidName(name)) {
    throw new RegmirrorError('NAME_INVALID', 'invalid repository name', { detail: { name: name.slice(0, 300) } })
  }
  return name
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag)
}

export interface Digest {
  algorithm: 'sha256'
  hex: string
  /** 'sha256:<hex>' */
  value: string
}

export function parseDigest(s: string): Digest {
  if (s.length > 200 || !DIGEST_RE.test(s)) {
    throw new RegmirrorError('DIGEST_INVALID', 'invalid digest', { detail: { digest: s.slice(0, 200) } })
  }
  const i = s.indexOf(':')
  const algorithm = s.slice(0, i)
  const hex = s.slice(i + 1)
  // Only sha256 is accepted: it is what every registry produces, and the cache must be able
  // to verify every digest it stores.
  if (algorithm !== 'sha256') {
    throw new RegmirrorError('DIGEST_INVALID', `unsupported digest algorithm: ${algorithm}`, { detail: { digest: s } })
  }
  if (!SHA256_HEX_RE.test(hex)) {
    throw new RegmirrorError('DIGEST_INVALID', 'invalid sha256 digest', { detail: { digest: s } })
  }
  return { algorithm: 'sha256', hex, value: s }
}

/** Whether `s` is a sha256 digest this mirror can store and verify. */
export function isValidDigest(s: string): boolean {
  return s.length === 71 && s.startsWith('sha256:') && SHA256_HEX_RE.test(s.slice(7))
}

export function isDigest(ref: string): boolean {
  return ref.includes(':')
}

/** A manifest reference is a tag or a digest; anything else is a 400. */
export type ManifestRef = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest }

export function parseManifestRef(ref: string): ManifestRef {
  if (isDigest(ref)) return { kind: 'digest', digest: parseDigest(ref) }
  if (!isValidTag(ref)) {
    throw new RegmirrorError('TAG_INVALID', 'invalid tag', { detail: { tag: ref.slice(0, 200) } })
  }
  return { kind: 'tag', tag: ref }
}

/** A fully qualified image reference: `REGISTRY/REPO:TAG`, `REGISTRY/REPO@sha256:…` or both. */
export interface ImageRef {
  /** The first component as written (an upstream name or registry host). */
  registry: string
  repo: string
  tag?: string
  digest?: string
}

/** Parses `REGISTRY/REPO[:TAG][@sha256:HEX]`; undefined unless it is one, with a tag or a digest. */
export function parseImageRef(v: string): ImageRef | undefined {
  const slash = v.indexOf('/')
  if (slash <= 0) return undefined
  const registry = v.slice(0, slash)
  if (!isHostName(registry) || registry !== registry.toLowerCase()) return undefined
  let rest = v.slice(slash + 1)
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!isValidDigest(digest)) return undefined
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon !== -1) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!isValidTag(tag)) return undefined
  }
  if (!isValidName(rest) || (tag === undefined && digest === undefined)) return undefined
  return { registry, repo: rest, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) }
}
