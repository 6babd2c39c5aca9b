import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import tar from 'tar-stream'
import type { OpenParts } from '../app.js'
import { OCI_INDEX } from '../oci/media-types.js'
import { parseDigest } from '../oci/reference.js'
import type { CachedImage, CachedManifest } from './cached-images.js'
import type { Progress } from './progress.js'

/** The annotation that names an image in an OCI layout's index.json; regmirror writes the full reference. */
export const REF_NAME = 'org.opencontainers.image.ref.name'

export interface ExportResult {
  blobs: number
  bytes: number
}

/**
 * Writes images as an OCI image layout in a tar (image-spec's image-layout: `oci-layout`,
 * `index.json`, `blobs/sha256/<hex>`), streamed from the cache to `out` with no temporary copy.
 * index.json comes first and names each image by its full reference (`docker.io/library/nginx:1.27`);
 * the blobs follow in the order an importer needs them: configs and layers, then manifests, children
 * before the index that lists them. Every file is hashed as it is read: a cache file that went bad on
 * disk fails the export instead of reaching the other side of an air gap.
 */
export async function writeOciArchive(parts: OpenParts, images: CachedImage[], out: Writable, progress: Progress): Promise<ExportResult> {
  const pack = tar.pack()
  const done = pipeline(pack, out)
  const result: ExportResult = { blobs: 0, bytes: 0 }
  try {
    const add = (name: string, body: Buffer) =>
      new Promise<void>((res, rej) => pack.entry(entryHeader(name, body.length), body, (e) => (e ? rej(e) : res())))
    await add('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })))
    await add('index.json', indexJson(images))
    for (const dir of ['blobs/', 'blobs/sha256/']) pack.entry({ name: dir, type: 'directory', mode: 0o755, mtime: new Date(0) })
    const written = new Set<string>()
    for (const img of images) {
      progress.imageStart(img.target.ref)
      progress.imagePlanned(img.target.ref, img.blobs.length + img.manifests.length, sizeOf(img))
      for (const b of img.blobs) {
        if (written.has(b.digest)) {
          progress.blobDone(img.target.ref, b.digest, b.size, true)
          continue
        }
        await addFile(parts, pack, b.digest, b.size, (n) => progress.bytes(img.target.ref, n))
        written.add(b.digest)
        result.blobs++
        result.bytes += b.size
        progress.blobDone(img.target.ref, b.digest, b.size, false)
      }
      for (const m of img.manifests) {
        if (written.has(m.digest)) {
          progress.blobDone(img.target.ref, m.digest, m.body.length, true)
          continue
        }
        await add(blobName(m.digest), m.body)
        written.add(m.digest)
        result.blobs++
        result.bytes += m.body.length
        progress.bytes(img.target.ref, m.body.length)
        progress.blobDone(img.target.ref, m.digest, m.body.length, false)
      }
      progress.imageDone(img.target.ref)
    }
    pack.finalize()
  } catch (err) {
    pack.destroy(err as Error)
    await done.catch(() => {})
    throw err
  }
  await done
  return result
}

/** index.json: each image's root by its full reference, then cosign's tags, then referrers not named by any tag. */
function indexJson(images: CachedImage[]): Buffer {
  const entries: object[] = []
  const named = new Set<string>()
  const entry = (m: CachedManifest, ref?: string) => {
    entries.push({ mediaType: m.mediaType, digest: m.digest, size: m.body.length, ...(ref ? { annotations: { [REF_NAME]: ref } } : {}) })
    named.add(m.digest)
  }
  for (const img of images) if (img.root) entry(img.root, img.target.ref)
  for (const img of images) for (const t of img.tagged) entry(t.manifest, t.ref)
  // A referrer from the referrers API has no tag: it is listed so an importer finds it, and its
  // subject field says which image it belongs to.
  for (const img of images) {
    for (const m of img.manifests) if (!named.has(m.digest) && hasSubject(m)) entry(m)
  }
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }))
}

function hasSubject(m: CachedManifest): boolean {
  try {
    return (JSON.parse(m.body.toString('utf8')) as { subject?: unknown }).subject !== undefined
  } catch {
    return false
  }
}

async function addFile(parts: OpenParts, pack: tar.Pack, digest: string, size: number, onBytes: (n: number) => void): Promise<void> {
  const d = parseDigest(digest)
  const fd = await parts.store.openForRead(d, size)
  const hash = createHash('sha256')
  const entry = pack.entry(entryHeader(blobName(digest), size))
  const file = createReadStream('', { fd, highWaterMark: 1024 * 1024 })
  file.on('data', (c) => {
    hash.update(c)
    onBytes(c.length)
  })
  await pipeline(file, entry)
  const actual = hash.digest('hex')
  if (actual !== d.hex)
    throw new Error(`cached ${digest} is damaged on disk (its bytes hash to sha256:${actual}); run regmirror verify --repair`)
}

function entryHeader(name: string, size: number): Partial<tar.Header> & { name: string } {
  return { name, size, mode: 0o644, mtime: new Date(0), type: 'file' }
}

function blobName(digest: string): string {
  return `blobs/sha256/${digest.slice('sha256:'.length)}`
}

function sizeOf(img: CachedImage): number {
  return img.blobs.reduce((n, b) => n + b.size, 0) + img.manifests.reduce((n, m) => n + m.body.length, 0)
}
