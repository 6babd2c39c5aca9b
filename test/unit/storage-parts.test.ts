import t from 'tap'
import { randomBytes } from 'node:crypto'
import { MIN_PART, PartUpload, type PartSink } from '../../src/storage/parts.js'

/** A sink that records what an S3 service would receive, and fails where told to. */
function recorder(fail: { part?: number; complete?: boolean } = {}) {
  const calls: string[] = []
  const parts: Buffer[] = []
  let put: Buffer | undefined
  const sink: PartSink = {
    create: async () => {
      calls.push('create')
      return 'up-1'
    },
    part: async (id, n, body) => {
      calls.push(`part ${n} ${body.length}`)
      if (fail.part === n) throw new Error('part refused')
      parts.push(Buffer.from(body))
      return `etag-${n}`
    },
    complete: async (id, list) => {
      calls.push(`complete ${list.map((p) => `${p.n}:${p.etag}`).join(',')}`)
      if (fail.complete) throw new Error('complete refused')
    },
    abort: async (id) => {
      calls.push(`abort ${id}`)
    },
    put: async (body) => {
      calls.push(`put ${body.length}`)
      put = Buffer.from(body)
    },
  }
  return { sink, calls, parts, put: () => put }
}

async function writeAll(u: PartUpload, data: Buffer, chunk: number, maxBuffered: { n: number }): Promise<void> {
  for (let at = 0; at < data.length; at += chunk) {
    await u.write(data.subarray(at, at + chunk))
    maxBuffered.n = Math.max(maxBuffered.n, u.buffered)
  }
}

t.test('a large blob goes in parts of the part size, the last smaller, reassembling the bytes', async (t) => {
  const r = recorder()
  const data = randomBytes(2 * MIN_PART + 12345)
  const u = new PartUpload(r.sink)
  const max = { n: 0 }
  await writeAll(u, data, 300_001, max)
  await u.complete()
  t.same(r.calls, ['create', `part 1 ${MIN_PART}`, `part 2 ${MIN_PART}`, 'part 3 12345', 'complete 1:etag-1,2:etag-2,3:etag-3'])
  t.ok(Buffer.concat(r.parts).equals(data), 'the parts are the bytes in order')
  t.ok(max.n <= MIN_PART, 'never more than one part in memory')
})

t.test('a blob of exactly one part is that part; a small one is one PUT without a multipart upload', async (t) => {
  const one = recorder()
  const u1 = new PartUpload(one.sink)
  await u1.write(randomBytes(MIN_PART))
  await u1.complete()
  t.same(one.calls, ['create', `part 1 ${MIN_PART}`, 'complete 1:etag-1'])
  const small = recorder()
  const data = randomBytes(1000)
  const u2 = new PartUpload(small.sink)
  await u2.write(data.subarray(0, 10))
  await u2.write(data.subarray(10))
  await u2.complete()
  t.same(small.calls, ['put 1000'])
  t.ok(small.put()!.equals(data))
  const empty = recorder()
  await new PartUpload(empty.sink).complete()
  t.same(empty.calls, ['put 0'], 'the empty blob is an empty object')
})

t.test('abort discards what was sent and nothing can complete after it', async (t) => {
  const r = recorder()
  const u = new PartUpload(r.sink)
  await u.write(randomBytes(MIN_PART + 1))
  await u.abort()
  t.same(r.calls, ['create', `part 1 ${MIN_PART}`, 'abort up-1'])
  await t.rejects(u.complete(), /upload is aborted/)
  await t.rejects(u.write(Buffer.from('x')), /upload is aborted/)
  t.same(r.calls.length, 3, 'nothing more reached the service')
  await u.abort()
  t.same(r.calls.length, 3, 'a second abort does nothing')
  const before = recorder()
  const v = new PartUpload(before.sink)
  await v.write(randomBytes(10))
  await v.abort()
  t.same(before.calls, [], 'aborting before any part was sent asks nothing of the service')
})

t.test('a failed part aborts the upload; a failed complete aborts it too', async (t) => {
  const r = recorder({ part: 2 })
  const u = new PartUpload(r.sink)
  await t.rejects(writeAll(u, randomBytes(3 * MIN_PART), 1 << 20, { n: 0 }), /part refused/)
  t.same(r.calls.slice(-2), [`part 2 ${MIN_PART}`, 'abort up-1'])
  await t.rejects(u.complete(), /upload is aborted/)
  const c = recorder({ complete: true })
  const v = new PartUpload(c.sink)
  await v.write(randomBytes(MIN_PART + 5))
  await t.rejects(v.complete(), /complete refused/)
  t.equal(c.calls.at(-1), 'abort up-1')
})

t.test('parts smaller than S3 allows are refused', async (t) => {
  t.throws(() => new PartUpload(recorder().sink, MIN_PART - 1), /at least/)
})
