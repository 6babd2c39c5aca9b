import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Fill, type FillHooks } from '../../src/cache/fill.js'
import { parseDigest } from '../../src/oci/reference.js'

const MiB = 1024 * 1024

// A connection that closes right after its last byte can surface as an error after the whole body
// arrived (undici: "other side closed"). Seen as a CI flake: the fill asked for a Range past the end,
// got 416 and failed a complete download.
function closesAfterLastByte(body: Buffer) {
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

t.test('a body that breaks after its last announced byte is verified, not resumed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fill-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const bytes = randomBytes(MiB)
  const d = parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`)
  const src = closesAfterLastByte(bytes)
  const h = hooks()
  const fill = new Fill(d, join(dir, 'x.tmp'), src, h, 3).start()
  const release = fill.retain()
  await fill.ready
  const got: Buffer[] = []
  for await (const c of fill.createReader(0, bytes.length - 1)) got.push(c as Buffer)
  release()
  await fill.finished
  t.ok(Buffer.concat(got).equals(bytes), 'the reader gets every byte')
  t.same(src.opens, [0], 'no Range request past the end')
  t.equal(h.committed, 1, 'the verified blob is kept')
  t.equal(h.failed, 0)
})

t.test('wrong content that breaks after its last byte is still refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fill-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const bytes = randomBytes(MiB)
  const d = parseDigest(`sha256:${createHash('sha256').update(randomBytes(16)).digest('hex')}`)
  const src = closesAfterLastByte(bytes)
  const h = hooks()
  const fill = new Fill(d, join(dir, 'x.tmp'), src, h, 3).start()
  await t.rejects(fill.finished, { code: 'DIGEST_MISMATCH' })
  t.same(src.opens, [0])
  t.equal(h.committed, 0, 'nothing unverified is kept')
})
