import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'

/**
 * The answer for something an offline upstream's cache does not hold: unknown (404), saying why,
 * so an operator reading a failed pull on an air-gapped site knows to import the image rather
 * than look for a network fault.
 */
export function notCachedOffline(up: UpstreamConfig, kind: 'blob' | 'manifest', repo: string, ref: string): RegmirrorError {
  return new RegmirrorError(
    kind === 'blob' ? 'OFFLINE_BLOB_UNKNOWN' : 'OFFLINE_MANIFEST_UNKNOWN',
    `the mirror is offline for ${up.name} and ${repo}${ref.includes(':') ? '@' : ':'}${ref} is not in its cache`,
    { detail: { upstream: up.name, repository: repo, reference: ref, offline: true } },
  )
}
