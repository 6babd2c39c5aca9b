import { createHash } from 'node:crypto'
import { open, readFile, readdir, stat, unlink } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { posix } from 'node:path'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import tar from 'tar-stream'
import type { OpenParts } from '../app.js'
import type { FillBody, FillSource } from '../cache/fill/fill.js'
import { RegmirrorError } from '../errors.js'
import { parseDigest } from '../oci/reference.js'

/** An entry's bytes: a tar-stream entry (streamx) or a file stream. */
type EntryStream = AsyncIterable<Uint8Array> & { resume(): unknown }

/** How far a blob of the archive got. */
export type BlobState = { state: 'stored' | 'cached'; size: number } | { state: 'corrupt'; reason: string }

/** A docker-save file kept aside until manifest.json says what it is (legacy archives name files, not digests). */
export interface Staged {
  path: string
  digest: string
  size: number
}

/** What reading an archive left: blobs already verified into the cache, the small index files, staged docker-save files. */
export interface ArchiveContents {
  blobs: Map<string, BlobState>
  /** index.json, oci-layout, manifest.json: bytes. */
  files: Map<string, Buffer>
  staged: Map<string, Staged>
  /** docker-save's links between identical layers: name → the name it stands for. */
  links: Map<string, string>
}

const INDEX_FILES = new Set(['index.json', 'oci-layout', 'manifest.json'])
const INDEX_FILE_LIMIT = 16 * 1024 * 1024
const BLOB_RE = /^blobs\/sha256\/([a-f0-9]{64})$/
// docker save (before Docker 25): `<id>/layer.tar` and `<config hex>.json` are what manifest.json names.
const LEGACY_RE = /^(?:[a-f0-9]{64}\.json|[^/]+\/layer\.tar)$/

export interface ReadHooks {
  /** Bytes of content moved into the cache (or staged). */
  bytes(n: number): void
  blob(digest: string, state: BlobState): void
}

/**
 * Reads an OCI layout (a tar, gzip or not, a directory, or stdin) or a docker-save tar, entry by
 * entry with no copy of the archive: each `blobs/sha256/<hex>` goes through a fill into the cache,
 * verified against its name; a blob that does not match is refused (nothing corrupt is kept) and
 * reading goes on. Entry names are only ever matched, never used as paths.
 */
export async function readArchive(parts: OpenParts, input: Readable, hooks: ReadHooks): Promise<ArchiveContents> {
  const contents: ArchiveContents = { blobs: new Map(), files: new Map(), staged: new Map(), links: new Map() }
  const extract = tar.extract()
  const feeding = pipeline(await ungzipped(input), extract)
  feeding.catch(() => {})
  try {
    for await (const source of extract) {
      // tar-stream's entries yield Buffers (typed unknown by streamx).
      const entry = source as typeof source & EntryStream
      const name = posix.normalize(entry.header.name).replace(/^(\.\/)+|^\/+/, '')
      if ((entry.header.type === 'link' || entry.header.type === 'symlink') && LEGACY_RE.test(name)) {
        contents.links.set(
          name,
          posix.normalize(posix.join(entry.header.type === 'symlink' ? posix.dirname(name) : '', entry.header.linkname ?? '')),
        )
        entry.resume()
        continue
      }
      if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        entry.resume()
        continue
      }
      const blob = BLOB_RE.exec(name)
      if (blob) await ingest(parts, `sha256:${blob[1]}`, entry, entry.header.size, contents, hooks)
      else if (INDEX_FILES.has(name)) contents.files.set(name, await readBounded(entry, INDEX_FILE_LIMIT, name))
      else if (LEGACY_RE.test(name)) contents.staged.set(name, await stage(parts, entry, hooks))
      else entry.resume()
    }
    await feeding
  } catch (err) {
    await discardStaged(contents)
    throw new Error(`the archive cannot be read to its end: ${(err as Error).message}`)
  }
  return contents
}

/** An OCI layout directory (`skopeo copy … oci:DIR`): its blobs through the same fills, verified. */
export async function readLayoutDir(parts: OpenParts, dir: string, hooks: ReadHooks): Promise<ArchiveContents> {
  const contents: ArchiveContents = { blobs: new Map(), files: new Map(), staged: new Map(), links: new Map() }
  for (const name of INDEX_FILES) {
    const path = join(dir, name)
    if ((await stat(path).catch(() => undefined))?.isFile()) contents.files.set(name, await readFile(path))
  }
  const blobDir = join(dir, 'blobs', 'sha256')
  for (const hex of await readdir(blobDir).catch(() => [] as string[])) {
    if (!/^[a-f0-9]{64}$/.test(hex)) continue
    const path = join(blobDir, hex)
    const st = await stat(path)
    if (st.isFile()) await ingest(parts, `sha256:${hex}`, createReadStream(path), st.size, contents, hooks)
  }
  return contents
}

/** Staged files nobody claimed (or all of them, when reading failed). */
export async function discardStaged(contents: ArchiveContents): Promise<void> {
  for (const s of contents.staged.values()) await unlink(s.path).catch(() => {})
  contents.staged.clear()
}

async function ingest(
  parts: OpenParts,
  digest: string,
  body: EntryStream,
  size: number,
  contents: ArchiveContents,
  hooks: ReadHooks,
): Promise<void> {
  let state: BlobState
  try {
    const how = await parts.blobs.ingest(parseDigest(digest), new ArchiveEntrySource(body, size), hooks.bytes)
    state = { state: how, size }
  } catch (err) {
    state = { state: 'corrupt', reason: reasonOf(err) }
  }
  // Whatever happened, the rest of the entry is skipped so the next one can be read.
  body.resume()
  contents.blobs.set(digest, state)
  hooks.blob(digest, state)
}

function reasonOf(err: unknown): string {
  const e = err as RegmirrorError
  if (e.code === 'DIGEST_MISMATCH') return `its bytes hash to ${String((e.detail as { actual?: string }).actual)}, not to its name`
  if (e.code === 'SIZE_MISMATCH') return 'it is shorter or longer than its entry says'
  return e.message
}

/**
 * One archive entry as a fill's source: the bytes come once, in order. A transfer that breaks
 * cannot be resumed (the archive is a stream), so a second open is an error, which fails the fill.
 */
class ArchiveEntrySource implements FillSource {
  private opened = false

  constructor(
    private readonly body: EntryStream,
    private readonly size: number,
  ) {}

  async open(offset: number): Promise<FillBody> {
    if (this.opened || offset !== 0) {
      throw new RegmirrorError('SIZE_MISMATCH', 'the archive entry ended before its announced size')
    }
    this.opened = true
    return { body: this.body, total: this.size, abort: () => this.body.resume() }
  }
}

async function stage(parts: OpenParts, entry: EntryStream, hooks: ReadHooks): Promise<Staged> {
  // In tmp/, beside the fills' own temp files: committed later by a rename on the same filesystem.
  const path = parts.store.tmpPathFor(parseDigest(`sha256:${'0'.repeat(64)}`))
  const fh = await open(path, 'wx')
  const hash = createHash('sha256')
  let size = 0
  try {
    for await (const chunk of entry) {
      const c = chunk as Buffer
      hash.update(c)
      size += c.length
      await fh.write(c)
      hooks.bytes(c.length)
    }
    await fh.sync()
  } catch (err) {
    await fh.close()
    await unlink(path).catch(() => {})
    throw err
  }
  await fh.close()
  return { path, digest: `sha256:${hash.digest('hex')}`, size }
}

async function readBounded(entry: EntryStream, limit: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of entry) {
    n += (c as Buffer).length
    if (n > limit) throw new Error(`${name} is larger than ${limit} bytes`)
    chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks)
}

/** The input, gunzipped when it starts with gzip's magic bytes. */
async function ungzipped(input: Readable): Promise<Readable> {
  const first = await new Promise<Buffer | null>((resolve, reject) => {
    const tryRead = () => {
      const chunk = input.read() as Buffer | null
      if (chunk !== null || input.readableEnded) {
        input.off('readable', tryRead)
        input.off('end', onEnd)
        input.off('error', reject)
        resolve(chunk)
      }
    }
    const onEnd = () => resolve(null)
    input.on('readable', tryRead)
    input.once('end', onEnd)
    input.once('error', reject)
  })
  if (first === null) return input
  input.unshift(first)
  return first[0] === 0x1f && first[1] === 0x8b ? input.pipe(createGunzip()) : input
}
