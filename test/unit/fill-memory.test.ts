import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Fill, type FillHooks } from '../../src/cache/fill/fill.js'
import { parseDigest } from '../../src/oci/reference.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { sleep } from '../helpers/sleep.js'

const MiB = 1024 * 1024

function source(chunks: Buffer[]) {
  const state = { pulled: 0, aborted: false }
  return {
    state,
    open: async (offset: number) => {
      async function* body() {
        let at = 0
        for (const c of chunks) {
          if (state.aborted) throw new Error('aborted')
          if (at >= offset) {
            state.pulled++
            yield c
          }
          at += c.length
          await new Promise((r) => setImmediate(r))
        }
      }
      return { body: body(), total: chunks.reduce((n, c) => n + c.length, 0), abort: () => void (state.aborted = true) }
    },
  }
}

const hooks = (): FillHooks & { writeErrors: number; failed: number } => {
  const h = {
    writeErrors: 0,
    failed: 0,
    admit: async () => true,
    commit: async () => {},
    abandon: () => {},
    onWriteError: () => void h.writeErrors++,
    onFailed: () => void h.failed++,
  }
  return h
}

const noDisk = async () => {
  throw Object.assign(new Error('no space'), { code: 'ENOSPC' })
}

t.test('an uncached fill holds at most its window while a reader lags, then delivers every byte', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fill-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const chunks = Array.from({ length: 20 }, () => randomBytes(MiB))
  const all = Buffer.concat(chunks)
  const d = parseDigest(sha256(all))
  const src = source(chunks)
  const h = hooks()
  const fill = new Fill(d, join(dir, 'x.tmp'), src, h, 0, { openFile: noDisk, memoryWindow: 2 * MiB }).start()
  const release = fill.retain()
  await fill.ready
  t.equal(fill.mode, 'memory')
  t.equal(h.writeErrors, 1)
  const reader = fill.createReader(0, all.length - 1)
  reader.pause()
  await sleep(200)
  t.ok(src.state.pulled <= 4, `a reader that does not read holds the download back (${src.state.pulled} of 20 chunks pulled)`)
  const got: Buffer[] = []
  for await (const c of reader) got.push(c as Buffer)
  release()
  await fill.finished
  t.equal(Buffer.concat(got).equals(all), true, 'every byte, in order')
  t.equal(fill.kept, false)
  t.same(await readdir(dir), [])
})

t.test('an uncached fill stops downloading when its last reader leaves', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fill-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const chunks = Array.from({ length: 20 }, () => randomBytes(MiB))
  const d = parseDigest(sha256(Buffer.concat(chunks)))
  const src = source(chunks)
  const h = hooks()
  const fill = new Fill(d, join(dir, 'x.tmp'), src, h, 3, { openFile: noDisk, memoryWindow: 2 * MiB }).start()
  const release = fill.retain()
  await fill.ready
  const reader = fill.createReader(0, 20 * MiB - 1)
  reader.once('data', () => {
    reader.destroy()
    release()
  })
  await t.rejects(fill.finished)
  t.ok(src.state.aborted, 'the upstream body was aborted')
  t.ok(src.state.pulled < 20, 'the rest was not downloaded')
  t.equal(h.failed, 0, 'not reported as an upstream failure')
})
