import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Tail } from '../../src/cache/fill/tail.js'

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
