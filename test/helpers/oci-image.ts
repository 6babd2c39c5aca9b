/**
 * Build an OCI image layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md) with random
 * content, for pushing with skopeo: `oci:<layoutDir>:<tag>`.
 *
 * Per platform: `layerSizes.length` layers, each an uncompressed tar (application/vnd.oci.image.layer.v1.tar)
 * holding one file of that many random bytes, a config whose rootfs.diff_ids are the layer digests, and a
 * manifest. With more than one platform, an image index over the manifests is the tagged object; with one, the
 * manifest is. Every platform gets its own random layers, so no blob is shared between platforms.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { sha256, type Platform } from './oci-fixtures.js'

export const MEDIA_TYPE = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const

/** The two platforms of the multi-arch test images: linux/amd64 (what this machine's clients pick) and linux/arm64. */
export const AMD64_ARM64: readonly Platform[] = [
  { os: 'linux', architecture: 'amd64' },
  { os: 'linux', architecture: 'arm64' },
]

export interface BuildOciLayoutOptions {
  tag: string
  /** Size in bytes of the random file in each layer (the tar adds 1.5 KiB or so). */
  layerSizes: number[]
  /** Default: linux/amd64 only (what `ctr content fetch` picks on this machine). */
  platforms?: readonly Platform[]
}

export interface PlatformImage {
  platform: Platform
  manifestDigest: string
  manifestSize: number
  configDigest: string
  layerDigests: string[]
}

export interface OciLayout {
  layoutDir: string
  tag: string
  /** Digest of the tagged object: the index if there is one, else the single manifest. */
  digest: string
  /** Set when there are several platforms. */
  indexDigest?: string
  manifestDigests: string[]
  /** Every blob a pull fetches through /v2/<name>/blobs/: layers then configs, per platform. */
  blobDigests: string[]
  layerDigests: string[]
  configDigests: string[]
  images: PlatformImage[]
  /** Sum of the sizes of every object in blobs/ (index, manifests, configs, layers). */
  totalBytes: number
}

function octal(value: number, width: number): string {
  // width-1 octal digits then NUL
  return value.toString(8).padStart(width - 1, '0') + '\0'
}

/** A POSIX ustar archive with one regular file. */
export function tarWithOneFile(name: string, content: Buffer, mtime = 0): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error('tarWithOneFile: name longer than 100 bytes')
  const header = Buffer.alloc(512, 0)
  header.write(name, 0, 100, 'utf8')
  header.write(octal(0o644, 8), 100, 8, 'ascii') // mode
  header.write(octal(0, 8), 108, 8, 'ascii') // uid
  header.write(octal(0, 8), 116, 8, 'ascii') // gid
  header.write(octal(content.length, 12), 124, 12, 'ascii') // size
  header.write(octal(mtime, 12), 136, 12, 'ascii') // mtime
  header.write('        ', 148, 8, 'ascii') // checksum placeholder: 8 spaces
  header.write('0', 156, 1, 'ascii') // typeflag: regular file
  header.write('ustar\0', 257, 6, 'ascii')
  header.write('00', 263, 2, 'ascii')
  header.write('root', 265, 32, 'ascii')
  header.write('root', 297, 32, 'ascii')
  let sum = 0
  for (const byte of header) sum += byte
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii')
  const padding = (512 - (content.length % 512)) % 512
  return Buffer.concat([header, content, Buffer.alloc(padding + 1024, 0)])
}

export async function buildOciLayout(dir: string, opts: BuildOciLayoutOptions): Promise<OciLayout> {
  const platforms = opts.platforms ?? [{ os: 'linux', architecture: 'amd64' }]
  if (platforms.length === 0) throw new Error('buildOciLayout: no platforms')
  const blobsDir = join(dir, 'blobs', 'sha256')
  await mkdir(blobsDir, { recursive: true })
  let totalBytes = 0
  const writeBlob = async (data: Buffer): Promise<string> => {
    const digest = sha256(data)
    await writeFile(join(blobsDir, digest.slice('sha256:'.length)), data)
    totalBytes += data.length
    return digest
  }

  const images: PlatformImage[] = []
  for (const platform of platforms) {
    const layers: { digest: string; size: number }[] = []
    for (const [i, size] of opts.layerSizes.entries()) {
      const tar = tarWithOneFile(`layer-${i}.bin`, randomBytes(size))
      layers.push({ digest: await writeBlob(tar), size: tar.length })
    }
    const config = Buffer.from(
      JSON.stringify({
        created: '2024-01-01T00:00:00Z',
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
        config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `regmirror e2e layer ${i}` })),
      }),
    )
    const configDigest = await writeBlob(config)
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPE.manifest,
        config: { mediaType: MEDIA_TYPE.config, digest: configDigest, size: config.length },
        layers: layers.map((l) => ({ mediaType: MEDIA_TYPE.layer, digest: l.digest, size: l.size })),
      }),
    )
    const manifestDigest = await writeBlob(manifest)
    images.push({ platform, manifestDigest, manifestSize: manifest.length, configDigest, layerDigests: layers.map((l) => l.digest) })
  }

  let top: { mediaType: string; digest: string; size: number }
  let indexDigest: string | undefined
  if (images.length > 1) {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPE.index,
        manifests: images.map((img) => ({
          mediaType: MEDIA_TYPE.manifest,
          digest: img.manifestDigest,
          size: img.manifestSize,
          platform: img.platform,
        })),
      }),
    )
    indexDigest = await writeBlob(index)
    top = { mediaType: MEDIA_TYPE.index, digest: indexDigest, size: index.length }
  } else {
    const only = images[0]!
    top = { mediaType: MEDIA_TYPE.manifest, digest: only.manifestDigest, size: only.manifestSize }
  }

  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.index,
      manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': opts.tag } }],
    }),
  )

  const layerDigests = images.flatMap((img) => img.layerDigests)
  const configDigests = images.map((img) => img.configDigest)
  return {
    layoutDir: dir,
    tag: opts.tag,
    digest: top.digest,
    ...(indexDigest !== undefined ? { indexDigest } : {}),
    manifestDigests: images.map((img) => img.manifestDigest),
    blobDigests: [...layerDigests, ...configDigests],
    layerDigests,
    configDigests,
    images,
    totalBytes,
  }
}
