import {
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  MAX_MANIFEST_SIZE,
  OCI_INDEX,
  OCI_MANIFEST,
} from './media-types.js'

/** The short-lived artifact manifest of the OCI 1.1 release candidates; zot and ACR still serve it. */
export const OCI_ARTIFACT_MANIFEST = 'application/vnd.oci.artifact.manifest.v1+json'

const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/

type Doc = Record<string, unknown>

/** Why a body is not a manifest: one short phrase, for logs and the error detail. */
export type ManifestCheck = { ok: true; mediaType: string; doc: Doc } | { ok: false; reason: string }

/**
 * Whether `body` is a manifest this mirror may store and serve, and its media type. The type is
 * the body's own `mediaType`, else `declared` (the Content-Type it came with, or the type it was
 * stored with), else what its shape says; it must be one of the manifest types of the OCI
 * image spec or Docker's, and the body must have that type's structure with well-formed
 * descriptors. An HTML error page, an image config or a layer is not a manifest, whatever the
 * upstream called it.
 */
export function checkManifest(body: Buffer, declared?: string): ManifestCheck {
  if (body.length === 0) return { ok: false, reason: 'empty body' }
  if (body.length > MAX_MANIFEST_SIZE) return { ok: false, reason: 'larger than a manifest may be' }
  // Cheap first: JSON manifests start with '{' (after optional whitespace).
  const first = body.subarray(0, 64).toString('latin1').trimStart()[0]
  if (first !== '{') return { ok: false, reason: 'not a JSON object' }
  let doc: unknown
  try {
    doc = JSON.parse(body.toString('utf8'))
  } catch {
    return { ok: false, reason: 'not valid JSON' }
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { ok: false, reason: 'not a JSON object' }
  const d = doc as Doc
  const own = d.mediaType
  if (own !== undefined && typeof own !== 'string') return { ok: false, reason: 'mediaType is not a string' }
  const mediaType = own ?? usable(declared) ?? inferred(d)
  if (mediaType === undefined) return { ok: false, reason: 'no manifest media type' }
  const reason = structureProblem(mediaType, d)
  return reason === undefined ? { ok: true, mediaType, doc: d } : { ok: false, reason }
}

/** A declared type worth believing: generic JSON or octet-stream says nothing about which manifest it is. */
function usable(declared: string | undefined): string | undefined {
  const t = declared?.split(';')[0]?.trim().toLowerCase()
  return t && t !== 'application/json' && t !== 'application/octet-stream' && t !== 'text/plain' ? t : undefined
}

/** OCI manifests and indexes may omit mediaType; schema 1 never has one. */
function inferred(d: Doc): string | undefined {
  if (d.schemaVersion === 1) return d.signatures === undefined ? DOCKER_SCHEMA1 : DOCKER_SCHEMA1_SIGNED
  if (d.schemaVersion !== 2) return undefined
  if (Array.isArray(d.manifests)) return OCI_INDEX
  if (Array.isArray(d.layers) && isDescriptor(d.config)) return OCI_MANIFEST
  return undefined
}

function structureProblem(mediaType: string, d: Doc): string | undefined {
  switch (mediaType) {
    case OCI_MANIFEST:
    case DOCKER_MANIFEST:
      if (d.schemaVersion !== 2) return 'schemaVersion is not 2'
      if (!isDescriptor(d.config)) return 'config is not a descriptor'
      if (!Array.isArray(d.layers) || !d.layers.every(isDescriptor)) return 'layers is not a list of descriptors'
      return subjectProblem(d)
    case OCI_INDEX:
    case DOCKER_LIST:
      if (d.schemaVersion !== 2) return 'schemaVersion is not 2'
      if (!Array.isArray(d.manifests) || !d.manifests.every(isDescriptor)) return 'manifests is not a list of descriptors'
      return subjectProblem(d)
    case OCI_ARTIFACT_MANIFEST:
      if (typeof d.artifactType !== 'string') return 'artifactType is missing'
      if (d.blobs !== undefined && (!Array.isArray(d.blobs) || !d.blobs.every(isDescriptor))) return 'blobs is not a list of descriptors'
      return subjectProblem(d)
    case DOCKER_SCHEMA1:
    case DOCKER_SCHEMA1_SIGNED:
      if (d.schemaVersion !== 1) return 'schemaVersion is not 1'
      if (!Array.isArray(d.fsLayers)) return 'fsLayers is missing'
      return undefined
    default:
      return `${mediaType.slice(0, 100)} is not a manifest media type`
  }
}

function subjectProblem(d: Doc): string | undefined {
  return d.subject === undefined || isDescriptor(d.subject) ? undefined : 'subject is not a descriptor'
}

function isDescriptor(x: unknown): boolean {
  if (typeof x !== 'object' || x === null) return false
  const o = x as Doc
  return (
    typeof o.mediaType === 'string' &&
    MEDIA_TYPE_RE.test(o.mediaType) &&
    typeof o.digest === 'string' &&
    o.digest.length <= 200 &&
    DIGEST_RE.test(o.digest) &&
    typeof o.size === 'number' &&
    Number.isSafeInteger(o.size) &&
    o.size >= 0
  )
}
