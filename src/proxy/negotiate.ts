import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_MANIFEST, accepts, indexEntries } from '../oci/media-types.js'
import { isValidDigest, parseDigest } from '../oci/reference.js'
import type { Manifest, ManifestService } from './manifest-service.js'

/**
 * What a client gets when its Accept header does not include the stored manifest's type,
 * following CNCF distribution: a Docker manifest list is answered with its linux/amd64
 * manifest when the client accepts single manifests (old clients that predate multi-arch);
 * anything else it cannot accept is MANIFEST_UNKNOWN, as distribution answers for OCI types.
 * No Accept header at all accepts anything.
 */
export async function negotiate(
  m: Manifest,
  accept: string[],
  up: UpstreamConfig,
  repo: string,
  manifests: ManifestService,
): Promise<Manifest> {
  if (accepts(accept, m.mediaType)) return m
  if (m.mediaType === DOCKER_LIST && (accepts(accept, DOCKER_MANIFEST) || accepts(accept, OCI_MANIFEST))) {
    const entry = indexEntries(m.body).find((e) => e.platform?.os === 'linux' && e.platform?.architecture === 'amd64')
    if (entry && accepts(accept, entry.mediaType) && isValidDigest(entry.digest)) {
      return (await manifests.get(up, repo, parseDigest(entry.digest))).manifest
    }
  }
  throw new RegmirrorError('MANIFEST_UNKNOWN', `manifest is ${m.mediaType}, which the Accept header does not allow`, {
    detail: { mediaType: m.mediaType },
  })
}
