import { randomBytes } from 'node:crypto'
import { mkdtemp, open, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { Fill, type FillHooks, type FillSource } from '../../src/cache/fill/fill.js'
import { parseDigest } from '../../src/oci/reference.js'
import { sha256 } from '../helpers/oci-fixtures.js'

// The end of a download: what decides whether the bytes are served, verified and kept.

const MiB = 1024 * 1024
const digestOf = (b: Buffer) => parseDigest(sha256(b))

const hooks = (): FillHooks & { committed: number; failed: number } => {
  const h = {
    committed: 0,
    failed: 0,
    admit: async () => true,
    commit: async () => void h.committed++,
    abandon: () => {},
    onFailed: () => void h.failed++,
  }
  return h
}

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fill-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Starts the fill, reads it whole as one client, and waits for the fill to end. */
async function readWhole(fill: Fill, size: number): Promise<Buffer> {
  const release = fill.retain()
  await fill.ready
  const got: Buffer[] = []
  for await (const c of fill.createReader(0, size - 1)) got.push(c as Buffer)
  release()
  await fill.finished
  return Buffer.concat(got)
}

// A connection that closes right after its last byte can surface as an error after the whole body
// arrived (undici: "other side closed"). Seen as a CI flake: the fill asked for a Range past the end,
// got 416 and failed a complete download.
function closesAfterLastByte(body: Buffer): FillSource & { opens: number[] } {
  const opens: number[] = []
  return {
    opens,
    open: async (offset: number) => {
      opens.push(offset)
      async function* gen() {
        yield body.subarray(offset)
        throw new Error('other side closed')
      }
      return { body: gen(), total: body.length, abort: () => {} }
    },
  }
}

t.test('a body that breaks after its last announced byte is verified, not resumed', async (t) => {
  const dir = await tempDir(t)
  const bytes = randomBytes(MiB)
  const src = closesAfterLastByte(bytes)
  const h = hooks()
  const fill = new Fill(digestOf(bytes), join(dir, 'x.tmp'), src, h, 3).start()
  t.ok((await readWhole(fill, bytes.length)).equals(bytes), 'the reader gets every byte')
  t.same(src.opens, [0], 'no Range request past the end')
  t.equal(h.committed, 1, 'the verified blob is kept')
  t.equal(h.failed, 0)
})

t.test('wrong content that breaks after its last byte is still refused', async (t) => {
  const dir = await tempDir(t)
  const src = closesAfterLastByte(randomBytes(MiB))
  const h = hooks()
  const fill = new Fill(digestOf(randomBytes(16)), join(dir, 'x.tmp'), src, h, 3).start()
  await t.rejects(fill.finished, { code: 'DIGEST_MISMATCH' })
  t.same(src.opens, [0])
  t.equal(h.committed, 0, 'nothing unverified is kept')
})

// The fill flushes to disk as it goes; a flush that fails part-way must keep the blob out of
// the cache even if the final fsync then reports success (Linux may forget the lost pages).
t.test('a failed flush during the download: clients get the verified bytes, nothing is kept', async (t) => {
  const dir = await tempDir(t)
  const chunks = Array.from({ length: 48 }, () => randomBytes(MiB))
  const all = Buffer.concat(chunks)
  const src: FillSource = {
    open: async () => {
      async function* body() {
        for (const c of chunks) {
          yield c
          await new Promise((r) => setImmediate(r))
        }
      }
      return { body: body(), total: all.length, abort: () => {} }
    },
  }
  let datasyncs = 0
  let syncs = 0
  const openFile = async (path: string) => {
    const fh = await open(path, 'w+')
    fh.datasync = async () => {
      datasyncs++
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })
    }
    const sync = fh.sync.bind(fh)
    fh.sync = async () => {
      syncs++
      await sync()
    }
    return fh
  }
  const h = hooks()
  const fill = new Fill(digestOf(all), join(dir, 'x.tmp'), src, h, 3, { openFile }).start()
  t.ok((await readWhole(fill, all.length)).equals(all), 'the reader got every byte')
  t.ok(datasyncs >= 1, `flushed during the download (${datasyncs})`)
  t.equal(syncs, 0, 'the final fsync is not trusted after a failed flush')
  t.equal(h.committed, 0, 'not committed to the cache')
  t.equal(fill.kept, false)
  t.same(await readdir(dir), [], 'the temp file is gone')
})
