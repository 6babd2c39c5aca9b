import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Fill, type FillHooks, type FillSource } from '../../src/cache/fill/fill.js'
import { Tail } from '../../src/cache/fill/tail.js'
import { parseDigest } from '../../src/oci/reference.js'
import { sha256 } from '../helpers/oci-fixtures.js'

// The fill's in-memory tail: readers get views of it instead of reading back the temp file, so
// every byte it hands out must be the byte at that offset of the blob, whatever the chunking.

t.test('views across slab boundaries give back the appended bytes, in order', async (t) => {
  const blob = randomBytes(10_000)
  const tail = new Tail(1000)
  // Chunks that straddle slabs, as network reads do.
  for (let off = 0; off < blob.length;) {
    const n = Math.min(1 + ((off * 7) % 1500), blob.length - off)
    tail.append(blob.subarray(off, off + n))
    off += n
  }
  t.equal(tail.end, blob.length)
  const back: Buffer[] = []
  for (let pos = 0; pos < tail.end;) {
    const v = tail.view(pos, 10_000) as Buffer
    t.ok(v.length > 0 && v.length <= 1000, 'a view never crosses a slab')
    back.push(v)
    pos += v.length
  }
  t.ok(Buffer.concat(back).equals(blob))
  t.equal(tail.view(blob.length, 1), undefined, 'nothing past the end')
})

t.test('trim drops whole slabs only; a view handed out stays valid after more appends and trims', async (t) => {
  const blob = randomBytes(5000)
  const tail = new Tail(1000)
  tail.append(blob.subarray(0, 2500))
  const early = tail.view(2000, 500) as Buffer
  tail.append(blob.subarray(2500))
  tail.trim(2500)
  t.equal(tail.start, 2000, 'the slab holding 2500 is kept')
  t.equal(tail.view(1999, 1), undefined, 'trimmed bytes are not served from memory')
  t.ok((tail.view(2000, 3000) as Buffer).equals(blob.subarray(2000, 3000)))
  tail.trim(5000)
  t.equal(tail.start, 4000, 'the last slab stays')
  t.ok(early.equals(blob.subarray(2000, 2500)), 'an earlier view is unchanged')
  tail.reset(4500)
  t.equal(tail.end, 4500)
  t.equal(tail.view(4000, 10), undefined)
})

t.test('a fill read from the tail, from the file, and across the two gives every reader the blob', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fill-tail-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const blob = randomBytes(9 * 1024 * 1024 + 12_345)
  // Odd-sized chunks, handed over one per turn of the event loop so readers interleave with the download.
  let sent = 0
  const source: FillSource = {
    open: async (offset) => {
      async function* body() {
        for (let off = offset; off < blob.length; off += 100_003) {
          await new Promise((r) => setImmediate(r))
          sent = Math.min(off + 100_003, blob.length)
          yield blob.subarray(off, sent)
        }
      }
      return { body: body(), total: blob.length - offset, abort: () => {} }
    },
  }
  let committed = 0
  const hooks: FillHooks = { admit: async () => true, commit: async () => void committed++, abandon: () => {} }
  const fill = new Fill(parseDigest(sha256(blob)), join(dir, 'x.tmp'), source, hooks, 0).start()
  const hold = fill.retain()
  await fill.ready
  const readAll = async (start: number) => {
    const got: Buffer[] = []
    for await (const c of fill.createReader(start, blob.length - 1)) got.push(c as Buffer)
    return Buffer.concat(got)
  }
  const eager = readAll(0)
  // Starts once several MiB are written: its first bytes come from the file, the rest from the tail.
  while (sent < 6 * 1024 * 1024) await new Promise((r) => setImmediate(r))
  const late = readAll(0)
  const middle = readAll(5_000_000)
  await fill.finished
  const after = await readAll(0)
  hold()
  t.ok((await eager).equals(blob), 'a reader that kept up')
  t.ok((await late).equals(blob), 'a reader that started behind the tail')
  t.ok((await middle).equals(blob.subarray(5_000_000)), 'a reader from the middle')
  t.ok(after.equals(blob), 'a reader after the end')
  t.equal(committed, 1)
})
