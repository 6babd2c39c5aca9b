export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json'
export const DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws'

/** Everything we can cache; asked of upstream so it answers with its native type. */
export const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1].join(', ')

export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024

/** Media types named by an Accept header (possibly several headers), parameters stripped. */
export function parseAccept(header: string | string[] | undefined): string[] {
  if (header === undefined) return []
  const parts = Array.isArray(header) ? header.join(',') : header
  return parts
    .split(',')
    .map((p) => (p.split(';')[0] ?? '').trim().toLowerCase())
    .filter((p) => p.length > 0)
}

export function accepts(accept: string[], mediaType: string): boolean {
  // No Accept at all means "anything": that is how curl and most scripts ask.
  if (accept.length === 0) return true
  return accept.includes(mediaType) || accept.includes('*/*') || accept.includes('application/*')
}

export interface IndexEntry {
  digest: string
  mediaType: string
  platform?: { os?: string; architecture?: string; variant?: string }
}

export function indexEntries(body: Buffer): IndexEntry[] {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { manifests?: unknown }
    if (!Array.isArray(doc.manifests)) return []
    return doc.manifests.filter((e): e is IndexEntry => typeof e === 'object' && e !== null && typeof (e as IndexEntry).digest === 'string')
  } catch {
    return []
  }
}

/**
 * What to answer a client whose Accept header names `accept`, for a stored manifest: `'this'`
 * when it accepts the type; the digest of the linux/amd64 entry when the manifest is a Docker
 * manifest list and the client accepts single manifests (old clients that predate multi-arch, as
 * CNCF distribution answers them); undefined when there is nothing it accepts (MANIFEST_UNKNOWN,
 * as distribution answers for OCI types). No Accept header at all accepts anything.
 */
export function pickForAccept(mediaType: string, body: Buffer, accept: string[]): 'this' | string | undefined {
  if (accepts(accept, mediaType)) return 'this'
  if (mediaType !== DOCKER_LIST || !(accepts(accept, DOCKER_MANIFEST) || accepts(accept, OCI_MANIFEST))) return undefined
  const entry = indexEntries(body).find((e) => e.platform?.os === 'linux' && e.platform?.architecture === 'amd64')
  return entry && accepts(accept, entry.mediaType) && /^sha256:[a-f0-9]{64}$/.test(entry.digest) ? entry.digest : undefined
}
