// What tests send and read over the distribution API: the Accept headers clients send for manifests, and the
// code of an OCI error body.
import { MediaTypes } from './oci-fixtures.js'

// Several sets, not one: what the mirror answers depends on what the client accepts (src/proxy/negotiate.ts).

/** a current client: OCI and Docker, image manifests and indexes/lists */
export const ACCEPT_ALL_MANIFESTS = [
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifest,
  MediaTypes.dockerManifestList,
].join(', ')

/** an OCI-only client: image manifest and image index */
export const ACCEPT_OCI_MANIFESTS = [MediaTypes.ociIndex, MediaTypes.ociManifest].join(', ')

/** a single-platform client: OCI and Docker image manifests, no index or list */
export const ACCEPT_IMAGE_MANIFESTS = [MediaTypes.ociManifest, MediaTypes.dockerManifest].join(', ')

/** The code of the first error in an OCI error body (`{"errors":[{"code":...}]}`). */
export function errorCode(body: Buffer | string): string | undefined {
  return (JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]?.code
}
