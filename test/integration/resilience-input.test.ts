import type { Test } from 'tap'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, rawRequest, startMirror } from '../helpers/mirror.js'
import { rawHttp, statusOf, stuckClient } from '../helpers/raw-http.js'
import { sleep } from '../helpers/sleep.js'
import { errorCode } from '../helpers/oci-http.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [4000] }
const D = `sha256:${'0'.repeat(64)}`

async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], ...extra })
  return { fake, mirror }
}

t.test('paths that try to escape or smuggle are 400s and never reach the upstream', async (t) => {
  const { fake, mirror } = await setup(t)
  const cases: [string, string][] = [
    ['/v2/%2e%2e/manifests/latest', 'NAME_INVALID'],
    ['/v2/a/%2e%2e/%2e%2e/manifests/latest', 'NAME_INVALID'],
    ['/v2/a/../b/manifests/latest', 'NAME_INVALID'],
    ['/v2/./a/manifests/latest', 'NAME_INVALID'],
    ['/v2/../a/manifests/latest', 'NAME_INVALID'],
    ['/v2/a/b/../../../../etc/passwd/manifests/latest', 'NAME_INVALID'],
    ['/v2/a/manifests/..', 'TAG_INVALID'],
    ['/v2/a/manifests/.hidden', 'TAG_INVALID'],
    ['/v2/a/manifests/%2e%2e', 'NAME_INVALID'],
    ['/v2/a%5cb/manifests/latest', 'NAME_INVALID'],
    ['/v2/a\\b/manifests/latest', 'NAME_INVALID'],
    [`/v2/a/blobs/sha256:..%2f..%2f${'0'.repeat(58)}`, 'NAME_INVALID'],
    [`/v2/a/blobs/sha256:${'0'.repeat(63)}/`, 'NAME_UNKNOWN'],
    [`/v2/a/blobs/sha256:${'0'.repeat(65)}`, 'DIGEST_INVALID'],
    [`/v2/a/blobs/sha256:${'A'.repeat(64)}`, 'DIGEST_INVALID'],
    [`/v2/a/manifests/${'t'.repeat(129)}`, 'TAG_INVALID'],
    [`/v2/${'a/'.repeat(130)}b/manifests/latest`, 'NAME_INVALID'],
    [`/v2/${'a'.repeat(2000)}/manifests/latest`, 'NAME_INVALID'],
    ['/v2/a//b/manifests/latest', 'NAME_INVALID'],
    ['/v2/a/b/blobs/' + D + '%00', 'NAME_INVALID'],
  ]
  for (const [path, code] of cases) {
    const r = await rawRequest(mirror.url, path)
    t.ok(r.status === 400 || r.status === 404, `${path.slice(0, 80)}: ${r.status}`)
    t.equal(errorCode(r.body), code, path.slice(0, 80))
  }
  // A raw NUL or space cannot even be sent through node's client: the parser rejects it.
  for (const p of ['/v2/a\0b/manifests/latest', '/v2/a b/manifests/latest']) {
    const raw = await rawHttp(mirror.url, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
    t.equal(statusOf(raw), 400, JSON.stringify(p))
  }
  t.equal(fake.count({ server: 'registry', path: /manifests|blobs/ }), 0, 'nothing reached the upstream')
})

t.test('Range headers: malformed or multi-range are ignored, out of bounds is 416, never a 500', async (t) => {
  const { fake, mirror } = await setup(t)
  const img = fake.addImage('library/r', '1', ONE)
  const layer = img.blobs.find((b) => b.size === 4000)!
  const url = `${mirror.url}/v2/r/blobs/${layer.digest}`
  for (const phase of ['cold', 'hit']) {
    const ignored = [
      'bytes=abc',
      'bytes=0-1,5-6',
      'items=0-5',
      'bytes=',
      'bytes=-',
      '=0-5',
      'bytes=1.5-2',
      'bytes=0x10-',
      'bytes 0-5',
      'bytes=--5',
    ]
    for (const range of ignored) {
      const r = await get(url, { range })
      t.equal(r.status, 200, `${phase} ${range}: ignored`)
      t.equal(sha256(r.body), layer.digest)
    }
    const unsatisfiable = ['bytes=4000-', 'bytes=-0', 'bytes=99999999999999999999-', 'bytes=5000-6000', 'bytes=10-5']
    for (const range of unsatisfiable) {
      const r = await get(url, { range })
      t.equal(r.status, 416, `${phase} ${range}: 416`)
    }
    const huge = await get(url, { range: 'bytes=0-99999999999999999999' })
    t.ok(huge.status === 200 || huge.status === 206, `${phase} huge end: ${huge.status}`)
    if (huge.status === 206) t.same(huge.body, layer.bytes)
  }
})

t.test('stuck clients: unfinished headers are cut off and do not block others; header size is capped', async (t) => {
  const { fake, mirror } = await setup(t, { server: { headersTimeout: '400ms', maxHeaderSize: 8192, idleTimeout: '500ms' } })
  const img = fake.addImage('library/s', '1', { ...ONE, layerSizes: [32 * 1024 * 1024] })
  const stuck = await Promise.all(Array.from({ length: 50 }, () => stuckClient(mirror.url, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ')))
  const ok = await get(`${mirror.url}/v2/`)
  t.equal(ok.status, 200, 'a normal request is answered while 50 clients are stuck')
  const answers = await Promise.all(stuck.map((s) => s.closed))
  t.ok(
    answers.every((a) => a === '' || statusOf(a) === 408),
    'every stuck client was disconnected (with a 408 where it could still be told)',
  )

  const big = await rawHttp(mirror.url, `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\nConnection: close\r\n\r\n`)
  t.equal(statusOf(big), 431, 'oversized headers: 431')

  // A client that asks for a large blob and then stops reading is dropped after the idle timeout.
  const layer = img.blobs.find((b) => b.size === 32 * 1024 * 1024)!
  await get(`${mirror.url}/v2/s/blobs/${layer.digest}`)
  const reader = await stuckClient(mirror.url, `GET /v2/s/blobs/${layer.digest} HTTP/1.1\r\nHost: x\r\n\r\n`)
  reader.socket.pause()
  const aborted = () => mirror.logs.some((l) => l.includes('"aborted":true') && l.includes(layer.digest))
  for (let i = 0; i < 200 && !aborted(); i++) await sleep(50)
  t.ok(aborted(), 'the server gave up on the client that stopped reading')
  reader.socket.resume()
  const received = await reader.closed
  t.ok(received.length < layer.size, 'the client saw the connection end before the whole blob')
  t.equal((await get(`${mirror.url}/v2/s/blobs/${layer.digest}`)).status, 200, 'and keeps serving')
})
