import { randomBytes } from 'node:crypto'
import { close, createReadStream, fstat, open as openFd } from 'node:fs'
import { mkdir, open, type FileHandle, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { promisify } from 'node:util'
import type { Digest } from '../oci/reference.js'
import { Layout, type StoredBlob } from './layout.js'

export type { StoredBlob } from './layout.js'

/**
 * Content-addressed files (layout.ts). Only verified bytes are ever renamed into place;
 * downloads in progress live in `tmp/` and are removed on start-up, so a temp file is never
 * mistaken for content after a crash.
 */
export class BlobStore {
  readonly layout: Layout

  /**
   * Opens a temp file for writing. Replaceable so tests can simulate a full disk or an
   * unwritable directory (root ignores permissions, and a real full disk is hard to arrange).
   */
  openTemp: (path: string) => Promise<FileHandle> = (path) => open(path, 'w+')

  constructor(readonly dataDir: string) {
    this.layout = new Layout(dataDir)
  }

  /**
   * Creates the directories. `clearTmp` (the server at start): whatever is in tmp/ is a download a
   * crash or kill interrupted, never content. The tools (preload, import) leave tmp/ alone: a mirror
   * may be running on the same directory, with downloads of its own in there.
   */
  async init(opts: { clearTmp: boolean } = { clearTmp: true }): Promise<void> {
    await mkdir(this.layout.blobsDir, { recursive: true })
    if (opts.clearTmp) await rm(this.layout.tmpDir, { recursive: true, force: true })
    await mkdir(this.layout.tmpDir, { recursive: true })
  }

  pathFor(d: Digest): string {
    return this.layout.blob(d)
  }

  tmpPathFor(d: Digest): string {
    return this.layout.tmpFor(d)
  }

  async size(d: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.pathFor(d))).size
    } catch {
      return undefined
    }
  }

  /**
   * Opens committed content for reading and checks it is still the size it was committed with:
   * a file removed or cut short under the running mirror is reported (ENOENT, or SIZE_CHANGED)
   * before any response goes out, instead of as an empty or short body. The caller owns the fd
   * (readStream() takes it over).
   */
  async openForRead(d: Digest, expectedSize: number): Promise<number> {
    const fd = await openFdAsync(this.pathFor(d), 'r')
    try {
      const { size } = await fstatAsync(fd)
      if (size !== expectedSize)
        throw Object.assign(new Error(`cached file is ${size} bytes, not ${expectedSize}`), { code: 'SIZE_CHANGED' })
      return fd
    } catch (err) {
      close(fd, () => {})
      throw err
    }
  }

  /** Bytes [start, end] of an fd from openForRead; the stream closes the fd when it ends. */
  readStream(fd: number, start: number, end: number): Readable {
    return createReadStream('', { fd, start, end, highWaterMark: 256 * 1024, autoClose: true })
  }

  closeFd(fd: number): void {
    close(fd, () => {})
  }

  async readAll(d: Digest): Promise<Buffer> {
    return readFile(this.pathFor(d))
  }

  /**
   * The whole file if it is at most `limit` bytes, else undefined without reading it: a layer
   * asked for as a manifest must not be read into memory. Throws when the file is missing.
   */
  async readSmall(d: Digest, limit: number): Promise<Buffer | undefined> {
    const fh = await open(this.pathFor(d), 'r')
    try {
      const { size } = await fh.stat()
      if (size > limit) return undefined
      const buf = Buffer.allocUnsafe(size)
      const { bytesRead } = await fh.read(buf, 0, size, 0)
      return buf.subarray(0, bytesRead)
    } finally {
      await fh.close()
    }
  }

  /** Moves a verified, fsynced temp file into place. */
  async commit(tmpPath: string, d: Digest): Promise<void> {
    await mkdir(this.layout.blobPrefixDir(d), { recursive: true })
    await rename(tmpPath, this.pathFor(d))
  }

  /** Writes small verified content (manifests) atomically. */
  async writeVerified(d: Digest, bytes: Buffer): Promise<void> {
    const tmp = this.tmpPathFor(d)
    const fh = await this.openTemp(tmp)
    try {
      await fh.writeFile(bytes)
      await fh.sync()
    } catch (err) {
      await fh.close().catch(() => {})
      await unlink(tmp).catch(() => {})
      throw err
    }
    await fh.close()
    try {
      await this.commit(tmp, d)
    } catch (err) {
      await unlink(tmp).catch(() => {})
      throw err
    }
  }

  async remove(d: Digest): Promise<void> {
    await unlink(this.pathFor(d)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }

  async touch(d: Digest, when = new Date()): Promise<void> {
    await utimes(this.pathFor(d), when, when).catch(() => {})
  }

  /** Every committed file, for rebuilding the index at start-up. */
  async scan(): Promise<StoredBlob[]> {
    return this.layout.scanBlobs().blobs
  }
}

const openFdAsync = promisify(openFd)
const fstatAsync = promisify(fstat)

/** Writes a small file atomically (tmp + rename), for link and metadata files. A failure leaves no temp file. */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await writeFile(tmp, data)
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}
