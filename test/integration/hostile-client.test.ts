import { connect } from 'node:net'
import type { Test } from 'tap'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { statusOf } from '../helpers/raw-http.js'
import { errorCode } from '../helpers/oci-http.js'

async function setup(t: Test) {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const img = hub.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [300_000] })
  const layer = img.blobs.find((b) => b.size === 300_000)!
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }] })
  return { hub, img, layer, mirror }
}

t.test('If-Range: a Range is honoured only when If-Range names this blob, on a fill and on a hit', async (t) => {
  const { hub, layer, mirror } = await setup(t)
  const url = `${mirror.url}/v2/app/blobs/${layer.digest}`
  hub.fault({ kind: 'slow', bytesPerSecond: 3_000_000, match: { server: 'cdn' }, times: 1 })
  for (const phase of ['fill', 'hit']) {
    const stale = await get(url, { range: 'bytes=100-199', 'if-range': '"sha256:0000"' })
    t.equal(stale.status, 200, `${phase}: another entity tag gets the whole blob`)
    t.equal(sha256(stale.body), layer.digest)
    const dated = await get(url, { range: 'bytes=100-199', 'if-range': 'Wed, 21 Oct 2015 07:28:00 GMT' })
    t.equal(dated.status, 200, `${phase}: a date never matches (no Last-Modified)`)
    const same = await get(url, { range: 'bytes=100-199', 'if-range': `"${layer.digest}"` })
    t.equal(same.status, 206, `${phase}: this blob's entity tag gets the range`)
    t.same(same.body, layer.bytes.subarray(100, 200))
    t.equal(same.headers.get('content-range'), `bytes 100-199/${layer.size}`)
  }
})

t.test('tags/list with a malformed n is a 400, and nothing is asked upstream', async (t) => {
  const { hub, mirror } = await setup(t)
  for (const n of ['abc', '-1', '1e3', '9999999', '']) {
    const r = await get(`${mirror.url}/v2/app/tags/list?n=${n}`)
    t.equal(r.status, 400, `n=${n}`)
    t.equal(errorCode(r.body), 'PAGINATION_NUMBER_INVALID')
  }
  t.equal(hub.count({ path: /tags/ }), 0)
  t.equal((await get(`${mirror.url}/v2/app/tags/list?n=1`)).status, 200)
})

t.test('a request body is never read: the answer comes and the connection closes instead of draining it', async (t) => {
  const { mirror } = await setup(t)
  const u = new URL(mirror.url)
  for (const head of [
    'PUT /v2/app/manifests/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n',
    'GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
  ]) {
    const answer = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = []
      const s = connect(Number(u.port), u.hostname, () => s.write(head))
      // Keep sending body bytes as a hostile client would, until the server hangs up.
      const timer = setInterval(
        () => s.writable && s.write(head.includes('chunked') ? '10000\r\n' + 'x'.repeat(65536) + '\r\n' : 'x'.repeat(65536)),
        5,
      )
      s.on('data', (c: Buffer) => chunks.push(c))
      s.on('error', () => {})
      s.on('close', () => {
        clearInterval(timer)
        resolve(Buffer.concat(chunks).toString('latin1'))
      })
      s.setTimeout(20_000, () => reject(new Error('the server kept the connection open to read the body')))
    })
    t.match(String(statusOf(answer)), /^(405|200)$/, `${head.split(' ')[0]}: answered (${statusOf(answer)})`)
    t.match(answer, /connection: close/i, 'and told the client the connection closes')
  }
})
