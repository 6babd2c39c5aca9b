// Builders for random OCI / Docker images, used by the fake registry and by tests that need image content.
// Pure: nothing here touches the network or the disk.
import { createHash, randomBytes } from 'node:crypto'

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

/** 'sha256:<hex>': the digest of some content, as OCI names it. */
export function sha256(content: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(content).digest('hex')
}

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface FakeBlob {
  digest: string
  size: number
  bytes: Buffer
}

export interface FakeManifest {
  digest: string
  mediaType: string
  body: Buffer
  platform?: Platform
  /** the config and layers this manifest references */
  config: FakeBlob
  layers: FakeBlob[]
}

export interface FakeImage {
  repo: string
  tag: string
  /** index digest if multi-arch, else the manifest digest: what the tag points at */
  digest: string
  /** media type of what the tag points at */
  mediaType: string
  manifests: FakeManifest[]
  index?: { digest: string; body: Buffer; mediaType: string }
  /** configs + layers of every platform */
  blobs: FakeBlob[]
}

export interface ImageOptions {
  /** default linux/amd64 + linux/arm64 */
  platforms?: Platform[]
  /** default [64 KiB, 256 KiB]; each platform gets its own random layers of these sizes */
  layerSizes?: number[]
  /** default 'oci' */
  format?: 'oci' | 'docker'
}

export const DEFAULT_PLATFORMS: readonly Platform[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64' },
]
export const DEFAULT_LAYER_SIZES: readonly number[] = [64 * 1024, 256 * 1024]

function blob(bytes: Buffer): FakeBlob {
  return { digest: sha256(bytes), size: bytes.length, bytes }
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value))
}

/**
 * Builds a random image: per platform, random layers (crypto.randomBytes), a config blob and a manifest;
 * plus an index (OCI image index or Docker manifest list) when there is more than one platform.
 */
export function buildImage(repo: string, tag: string, opts: ImageOptions = {}): FakeImage {
  const platforms = opts.platforms ?? DEFAULT_PLATFORMS
  const layerSizes = opts.layerSizes ?? DEFAULT_LAYER_SIZES
  const docker = opts.format === 'docker'
  const mt = {
    manifest: docker ? MediaTypes.dockerManifest : MediaTypes.ociManifest,
    index: docker ? MediaTypes.dockerManifestList : MediaTypes.ociIndex,
    config: docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig,
    layer: docker ? MediaTypes.dockerLayer : MediaTypes.ociLayer,
  }
  if (platforms.length === 0) throw new Error('buildImage: at least one platform')

  const manifests: FakeManifest[] = []
  const blobs: FakeBlob[] = []
  for (const platform of platforms) {
    const layers = layerSizes.map((n) => blob(randomBytes(n)))
    const config = blob(
      json({
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant ? { variant: platform.variant } : {}),
        created: '2024-01-01T00:00:00Z',
        config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
        // random layers are not real tars; the diff_ids are stand-ins
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'fake' })),
        fake: { repo, tag, nonce: randomBytes(8).toString('hex') },
      }),
    )
    const body = json({
      schemaVersion: 2,
      mediaType: mt.manifest,
      config: { mediaType: mt.config, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: mt.layer, digest: l.digest, size: l.size })),
    })
    manifests.push({ digest: sha256(body), mediaType: mt.manifest, body, platform: { ...platform }, config, layers })
    blobs.push(config, ...layers)
  }

  let index: FakeImage['index']
  if (manifests.length > 1) {
    const body = json({
      schemaVersion: 2,
      mediaType: mt.index,
      manifests: manifests.map((m) => ({
        mediaType: m.mediaType,
        digest: m.digest,
        size: m.body.length,
        platform: m.platform,
      })),
    })
    index = { digest: sha256(body), body, mediaType: mt.index }
  }
  const top = index ?? manifests[0]!
  return {
    repo,
    tag,
    digest: top.digest,
    mediaType: index ? index.mediaType : manifests[0]!.mediaType,
    manifests,
    ...(index ? { index } : {}),
    blobs,
  }
}
