import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BlobStore } from '../../src/cache/blob-store.js'
import { LruIndex, type IndexChange } from '../../src/cache/lru-index.js'
import { createLogger } from '../../src/log.js'
import { Metrics } from '../../src/metrics.js'
import { parseDigest } from '../../src/oci/reference.js'
import { FillBoard } from '../../src/workers/fill-board.js'
import { IndexHost } from '../../src/workers/index-host.js'
import type { Claim } from '../../src/workers/protocol.js'
import { sha256 } from '../helpers/oci-fixtures.js'

const D = 'sha256:' + 'a'.repeat(64)

function board(cached = new Set<string>()) {
  const sent: [number, string, unknown][] = []
  const held: [number, string][] = []
  const removed: string[] = []
  const b = new FillBoard({
    cached: (d) => cached.has(d),
    acquire: (w, d) => held.push([w, d]),
    send: (w, name, data) => sent.push([w, name, data]),
    removeFile: async (p) => void removed.push(p),
  })
  return { b, sent, held, removed }
}

t.test('the first worker owns the download; others wait until it can be followed, and are held in use from the join', async (t) => {
  const { b, sent, held } = board()
  t.same(await b.claim(1, D), { role: 'owner' })
  t.same(await b.claim(1, D), { role: 'owner' }, "the owner's own clients join its fill locally")
  const waiting = b.claim(2, D)
  b.report(1, { event: 'started', digest: D, path: '/tmp/x.tmp' })
  b.report(2, { event: 'running', digest: D, size: 100, followable: true })
  b.report(1, { event: 'progress', digest: D, written: 10 })
  t.same(held, [], 'nothing followed yet (a report from a worker that does not own the digest is ignored)')
  b.report(1, { event: 'running', digest: D, size: 100, followable: true })
  t.same(await waiting, { role: 'follow', path: '/tmp/x.tmp', size: 100, written: 10 })
  t.same(held, [[2, D]], 'the follower holds the digest in use')
  b.report(1, { event: 'progress', digest: D, written: 60 })
  t.same(
    await b.claim(3, D),
    { role: 'follow', path: '/tmp/x.tmp', size: 100, written: 60 },
    'a later follower starts from the progress so far',
  )
  b.leave(3, D)
  b.report(1, { event: 'progress', digest: D, written: 90 })
  b.report(1, { event: 'done', digest: D, size: 100 })
  t.same(
    sent.filter(([w]) => w === 3),
    [],
    'a follower that left hears no more',
  )
  t.same(
    sent.map(([w, name]) => `${w} ${name}`),
    ['2 fill.progress', '2 fill.progress', '2 fill.done'],
    'the follower hears of the progress after its join (60, 90), then of the end',
  )
  t.equal(b.size, 0, 'the download is over')
})

t.test('a download that cannot be followed: the others download alone; a failure reaches whoever waits', async (t) => {
  const { b } = board()
  await b.claim(1, D)
  const waiting = b.claim(2, D)
  b.report(1, { event: 'started', digest: D, path: '/tmp/y.tmp' })
  b.report(1, { event: 'running', digest: D, size: 5, followable: false })
  t.same(await waiting, { role: 'alone' }, 'not kept (memory window): the follower fills on its own')
  t.same(await b.claim(3, D), { role: 'alone' })
  b.report(1, { event: 'done', digest: D, size: 5 })

  await b.claim(1, D)
  const failing = b.claim(2, D)
  b.report(1, { event: 'failed', digest: D, code: 'BLOB_UNKNOWN', message: 'not there' })
  t.same(await failing, { role: 'failed', code: 'BLOB_UNKNOWN', message: 'not there' } satisfies Claim)
  t.same(await b.claim(2, D), { role: 'owner' }, 'after the failure the next one asks anew')
})

t.test('the owner dies: its followers are told, its waiters fail, its temp file is removed; a dead follower is dropped', async (t) => {
  const { b, sent, removed } = board()
  await b.claim(1, D)
  b.report(1, { event: 'started', digest: D, path: '/tmp/z.tmp' })
  b.report(1, { event: 'running', digest: D, size: 100, followable: true })
  await b.claim(2, D)
  await b.claim(3, D)
  await b.workerGone(3)
  await b.workerGone(1)
  t.same(removed, ['/tmp/z.tmp'])
  t.same(
    sent.map(([w, name]) => `${w} ${name}`),
    ['2 fill.failed'],
    'only the live follower hears of the failure',
  )
  t.equal(b.size, 0)
  const d2 = 'sha256:' + 'b'.repeat(64)
  await b.claim(4, d2)
  const waiter = b.claim(5, d2)
  await b.workerGone(4)
  t.equal(((await waiter) as { role: string }).role, 'failed', 'a claim waiting for a dead owner fails')
})

t.test('a digest in the cache is a hit, not a download', async (t) => {
  const { b } = board(new Set([D]))
  t.same(await b.claim(1, D), { role: 'cached' })
})

t.test('IndexHost: in-use holds and reservations are per worker; a dead worker gives them back; pins are the union', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rm-workers-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const store = new BlobStore(dir)
  await store.init()
  const digests: string[] = []
  for (let i = 0; i < 3; i++) {
    const bytes = randomBytes(100)
    const d = parseDigest(sha256(bytes))
    const tmp = store.tmpPathFor(d)
    const fh = await store.openTemp(tmp)
    await fh.writeFile(bytes)
    await fh.close()
    await store.commit(tmp, d)
    digests.push(d.value)
  }
  const index = new LruIndex(store, 300, 0, new Metrics({ defaultMetrics: false }), createLogger('silent'))
  const sent: IndexChange[][] = []
  const host = new IndexHost(index, (m) => sent.push(m.changes))
  await index.load()
  const [a, b, c] = digests as [string, string, string]
  t.equal(await host.hold(1, a), 100, 'worker 1 reads a')
  host.setPins(2, [b])
  t.equal(await host.reserve(3, 100), true, 'room is made...')
  t.notOk(index.has(c), '...by evicting c, the one entry neither read nor pinned')
  t.ok(index.has(a) && index.has(b))
  host.workerGone(1)
  t.equal(await host.reserve(3, 100), true, 'worker 1 gone: its hold went with it...')
  t.notOk(index.has(a), '...and a could be evicted')
  t.ok(index.has(b), 'b stays pinned')
  t.equal(await host.reserve(4, 200), false, "worker 3's reservations still count")
  host.workerGone(3)
  t.equal(await host.reserve(4, 200), true, "worker 3's reservations were given back when it died")
  host.workerGone(2)
  t.equal(index.isPinned(b), false, "worker 2's pins went with it")
  host.releaseUse(9, c)
  t.equal(host.inUseBy(9, c), 0, 'a release nobody holds changes nothing')
  await new Promise((r) => setImmediate(r))
  t.ok(
    sent.flat().some((ch) => ch.digest === a && 'removed' in ch),
    'the workers heard of the eviction',
  )
})
