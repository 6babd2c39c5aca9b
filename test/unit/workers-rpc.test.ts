import { EventEmitter } from 'node:events'
import t from 'tap'
import { RegmirrorError } from '../../src/errors.js'
import { Rpc, type Port } from '../../src/workers/rpc.js'

/** Two connected ports; messages are copied and delivered asynchronously, as over IPC. */
function pair(): [Port & { cut(): void }, Port] {
  const a = new EventEmitter()
  const b = new EventEmitter()
  let open = true
  const end = (to: EventEmitter): Port => ({
    send: (msg) => {
      if (!open) throw new Error('channel closed')
      const copy = structuredClone(msg)
      setImmediate(() => to.emit('message', copy))
    },
    onMessage: (fn) => {
      const self = to === b ? a : b
      self.on('message', fn)
      return () => self.off('message', fn)
    },
  })
  return [{ ...end(b), cut: () => (open = false) }, end(a)]
}

type Api = { add: (x: number, y: number) => number; fail: () => void; slow: () => number; missing: () => void }

t.test('calls are answered by id, concurrently and in any order; errors keep their code', async (t) => {
  const [p1, p2] = pair()
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  new Rpc<Record<string, never>, Api>(p2, {
    add: (x, y) => x + y,
    fail: () => {
      throw new RegmirrorError('BLOB_UNKNOWN', 'no such blob', { detail: { secret: 'x' } })
    },
    slow: async () => {
      await gate
      return 7
    },
  })
  const rpc = new Rpc<Api>(p1)
  const slow = rpc.call('slow', [])
  t.equal(await rpc.call('add', [2, 3]), 5, 'a later call is answered before an earlier slow one')
  release()
  t.equal(await slow, 7)
  const err = await rpc.call('fail', []).catch((e: unknown) => e)
  t.ok(err instanceof RegmirrorError)
  t.equal((err as RegmirrorError).code, 'BLOB_UNKNOWN', 'the code crosses')
  t.equal((err as RegmirrorError).detail, undefined, 'the detail does not')
  t.equal(((await rpc.call('missing', []).catch((e: unknown) => e)) as RegmirrorError).code, 'INTERNAL', 'an unknown method is an error')
  t.equal(rpc.pendingCalls, 0, 'nothing is left waiting')
})

t.test('a call without an answer times out; closing fails every call still waiting and the later ones', async (t) => {
  const [p1, p2] = pair()
  new Rpc<Record<string, never>, Api>(p2, { slow: () => new Promise<number>(() => {}) })
  const rpc = new Rpc<Api>(p1, {}, 50)
  const timedOut = (await rpc.call('slow', []).catch((e: unknown) => e)) as RegmirrorError
  t.match(timedOut.message, /within 50 ms/)
  const waiting = rpc.call('slow', [], { timeoutMs: 0 }).catch((e: unknown) => e)
  await new Promise((r) => setTimeout(r, 20))
  t.equal(rpc.pendingCalls, 1, 'no deadline with timeoutMs 0')
  rpc.close('worker gone')
  t.equal(((await waiting) as RegmirrorError).code, 'UNAVAILABLE', 'the other end gone: the waiting call fails')
  t.equal(((await rpc.call('add', [1, 1]).catch((e: unknown) => e)) as RegmirrorError).code, 'UNAVAILABLE', 'and later ones at once')
  t.equal(rpc.pendingCalls, 0)
})

t.test('a send that throws (channel closed) fails the call; events reach their listeners; foreign messages are ignored', async (t) => {
  const [p1, p2] = pair()
  const far = new Rpc<Record<string, never>, Api>(p2, { add: (x, y) => x + y })
  const rpc = new Rpc<Api>(p1)
  const heard: unknown[] = []
  const off = far.on('progress', (d) => heard.push(d))
  rpc.notify('progress', { written: 10 })
  p1.send({ cmd: 'NODE_CLUSTER', not: 'ours' })
  await new Promise((r) => setTimeout(r, 10))
  off()
  rpc.notify('progress', { written: 20 })
  await new Promise((r) => setTimeout(r, 10))
  t.same(heard, [{ written: 10 }], 'one event, until the listener was removed')
  p1.cut()
  const err = (await rpc.call('add', [1, 2]).catch((e: unknown) => e)) as Error
  t.match(err.message, /channel closed/)
  t.equal(rpc.pendingCalls, 0)
})
