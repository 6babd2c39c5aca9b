import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, open, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Fill, type FillHooks } from '../../src/cache/fill.js'
import { parseDigest } from '../../src/oci/reference.js'

const MiB = 1024 * 1024

function source(chunks: Buffer[]) {
  return {
    open: async () => {
      async function* body() {
        for (const c of chunks) {
          yield c
          await new Promise((r) => setImmediate(r))
        }
      }
      return { body: body(), total: chunks.reduce((n, c) => n + c.length, 0), abort: () => {} }
    },
  }
}

const hooks = (): FillHooks & { committed: number } => {
  const h = { committed: 0, admit: async () => true, commit: async () => void h.committed++, abandon: () => {} }
  return h
}

// The fill flushes to disk as it goes; a flush that fails part-way must keep the blob out of
// the cache even if the final fsync then reports success (Linux may forget the lost pages).
t.test('a failed flush during the download: clients get the verified bytes, nothing is kept', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fill-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const chunks = Array.from({ length: 48 }, () => randomBytes(MiB))
  const all = Buffer.concat(chunks)
  const d = parseDigest(`sha256:${createHash('sha256').update(all).digest('hex')}`)
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
  const fill = new Fill(d, join(dir, 'x.tmp'), source(chunks), h, 3, { openFile }).start()
  const release = fill.retain()
  await fill.ready
  const got: Buffer[] = []
  for await (const c of fill.createReader(0, all.length - 1)) got.push(c as Buffer)
  release()
  await fill.finished
  t.ok(Buffer.concat(got).equals(all), 'the reader got every byte')
  t.ok(datasyncs >= 1, `flushed during the download (${datasyncs})`)
  t.equal(syncs, 0, 'the final fsync is not trusted after a failed flush')
  t.equal(h.committed, 0, 'not committed to the cache')
  t.equal(fill.kept, false)
  t.same(await readdir(dir), [], 'the temp file is gone')
})
