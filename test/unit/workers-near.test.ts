import t from 'tap'
import { KvClient } from '../../src/workers/kv-client.js'
import type { PrimaryApi, WorkerApi } from '../../src/workers/protocol.js'
import { RemoteIndex } from '../../src/workers/remote-index.js'
import type { Rpc } from '../../src/workers/rpc.js'

const D = 'sha256:' + 'b'.repeat(64)

/** A worker's channel to a primary played by `answer`: what is called and sent is recorded. */
function channel(answer: (name: string, args: unknown[]) => unknown) {
  const calls: string[] = []
  const notes: [string, unknown][] = []
  const listeners = new Map<string, (d: unknown) => void>()
  const rpc = {
    call: async (name: string, args: unknown[]) => {
      calls.push(name)
      return answer(name, args)
    },
    notify: (name: string, data: unknown) => void notes.push([name, data]),
    on: (name: string, fn: (d: unknown) => void) => {
      listeners.set(name, fn)
      return () => listeners.delete(name)
    },
  } as unknown as Rpc<PrimaryApi, WorkerApi>
  const emit = (name: string, data: unknown) => listeners.get(name)?.(data)
  return { rpc, calls, notes, emit }
}

t.test('a worker asks the primary for a hold once, keeps it while read and a moment after, then gives it back', async (t) => {
  const { rpc, calls, notes } = channel((name) => (name === 'index.hold' ? 42 : undefined))
  const index = new RemoteIndex(rpc, 1000)
  const [a, b] = await Promise.all([index.hold(D), index.hold(D)])
  t.same([a, b], [42, 42])
  t.same(calls, ['index.hold', 'index.hold'], 'two requests at once each asked')
  t.same(notes, [['index.releaseUse', D]], 'the second hold the primary gave is given back at once: one is kept')
  notes.length = 0
  t.equal(await index.hold(D), 42, 'a third reader')
  t.equal(calls.length, 2, 'reuses the hold without asking')
  index.releaseUse(D)
  index.releaseUse(D)
  t.same(notes, [], 'a reader is left')
  index.releaseUse(D)
  t.same(notes, [], 'the last reader gone: the hold lingers')
  t.equal(await index.hold(D), 42, 'read again within the moment')
  t.equal(calls.length, 2, 'still no request')
  index.releaseUse(D)
  await new Promise((r) => setTimeout(r, 1100))
  t.same(notes, [['index.releaseUse', D]], 'then given back once')
})

t.test('access times are sent at most once a moment per digest', async (t) => {
  const { rpc, notes, emit } = channel(() => 9)
  const index = new RemoteIndex(rpc, 1000)
  index.touch(D)
  t.same(notes, [], 'not in the index copy: nothing to touch')
  emit('index.changes', { changes: [{ digest: D, size: 9 }], stats: { bytes: 9, count: 1, pinnedBytes: 0 } })
  index.touch(D)
  index.touch(D)
  t.same(notes, [['index.touch', D]], 'a cached manifest touched by every tag request: one message')
})

t.test('a forgotten digest lets its idle hold go at once', async (t) => {
  const { rpc, notes } = channel(() => 7)
  const index = new RemoteIndex(rpc, 1000)
  await index.hold(D)
  index.releaseUse(D)
  index.forget(D)
  t.same(notes, [
    ['index.releaseUse', D],
    ['index.forget', D],
  ])
})

t.test("a worker's kv copy answers repeated reads and drops what another worker changed", async (t) => {
  let stored: unknown = { digest: 'one' }
  const { rpc, calls, emit } = channel((name, args) => {
    if (name === 'kv.get') return stored
    if (name === 'kv.set') stored = args[1]
    return true
  })
  const kv = new KvClient(rpc)
  t.same(await kv.get('k'), { digest: 'one' })
  t.same(await kv.get('k'), { digest: 'one' })
  t.same(calls, ['kv.get'], 'asked once')
  stored = { digest: 'two' }
  emit('kv.changed', 'k')
  t.same(await kv.get('k'), { digest: 'two' }, 'changed elsewhere: asked again')
  await kv.set('k', { digest: 'three' })
  t.same(await kv.get('k'), { digest: 'three' }, 'its own write is read back without asking')
  t.same(calls, ['kv.get', 'kv.get', 'kv.set'])
  emit('kv.changed', '')
  stored = undefined
  t.equal(await kv.get('k'), undefined, 'cleared everywhere: a miss')
  t.equal(await kv.get('k'), undefined)
  t.equal(calls.filter((c) => c === 'kv.get').length, 4, 'a miss is not kept')
})
