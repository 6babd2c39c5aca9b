import { randomBytes } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import type { Test } from 'tap'
import t from 'tap'
import { MANIFEST_ACCEPT as ACCEPT } from '../../src/oci/media-types.js'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, rawRequest, startMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { errorCode } from '../helpers/oci-http.js'

async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const fake = await startFakeRegistry({ rateLimit: { limit: 100, remaining: 100 } })
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], ...extra })
  return { fake, mirror }
}

/** Pulls an image the way a client does: tag → index → each manifest → each blob; verifies every body. */
async function pull(t: Test, base: string, name: string, tag: string) {
  const idx = await get(`${base}/v2/${name}/manifests/${tag}`, { accept: ACCEPT })
  t.equal(idx.status, 200, 'tag resolves')
  t.equal(idx.headers.get('docker-content-digest'), sha256(idx.body), 'tag body matches its digest header')
  const doc = JSON.parse(idx.body.toString()) as { manifests: { digest: string }[] }
  for (const m of doc.manifests) {
    const man = await get(`${base}/v2/${name}/manifests/${m.digest}`, { accept: ACCEPT })
    t.equal(man.status, 200)
    t.equal(sha256(man.body), m.digest, 'manifest verified')
    const mdoc = JSON.parse(man.body.toString()) as { config: { digest: string }; layers: { digest: string }[] }
    for (const b of [mdoc.config, ...mdoc.layers]) {
      const blob = await get(`${base}/v2/${name}/blobs/${b.digest}`)
      t.equal(blob.status, 200)
      t.equal(sha256(blob.body), b.digest, 'blob verified')
      t.equal(Number(blob.headers.get('content-length')), blob.body.length)
      t.equal(blob.headers.get('docker-content-digest'), b.digest)
    }
  }
  return idx
}

t.test('multi-arch pull through the mirror: second pull makes no upstream requests', async (t) => {
  const { fake, mirror } = await setup(t)
  const img = fake.addImage('library/alpine', '3.20')
  const first = await pull(t, mirror.url, 'alpine', '3.20')
  t.equal(first.headers.get('docker-content-digest'), img.digest)
  t.equal(first.headers.get('content-type'), img.mediaType)
  t.ok(fake.count({ server: 'auth', path: /^\/token/ }) >= 1, 'a token was fetched from the realm')
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), img.blobs.length, 'each blob downloaded once, from the CDN')
  const leaked = fake.requests.filter((r) => r.server === 'cdn' && r.headers.authorization !== undefined)
  t.equal(leaked.length, 0, 'the registry token never reaches the CDN host')
  fake.reset()
  await pull(t, mirror.url, 'alpine', '3.20')
  t.equal(fake.count({ server: 'registry' }), 0, 'no upstream manifest or blob requests within the TTL')
  t.equal(fake.count({ server: 'cdn' }), 0)
  const metrics = await get(`${mirror.url}/metrics`)
  t.match(metrics.body.toString(), /regmirror_requests_total\{kind="blob",result="hit"\} \d+/)
  t.match(metrics.body.toString(), /regmirror_upstream_ratelimit_remaining\{upstream="docker.io"\} \d+/)
  const all = mirror.logs.join('\n')
  t.notMatch(all, /Bearer [A-Za-z0-9]/, 'no token in the logs')
  t.ok(
    mirror.logs.some((l) => l.includes('"msg":"request"') && l.includes('"cache":"hit"')),
    'request log lines carry the cache result',
  )
})

t.test('base endpoint, health, and write methods', async (t) => {
  const { mirror } = await setup(t)
  const base = await get(`${mirror.url}/v2/`)
  t.equal(base.status, 200)
  t.equal(base.headers.get('docker-distribution-api-version'), 'registry/2.0')
  t.equal((await get(`${mirror.url}/healthz`)).status, 200)
  // CONNECT would make the mirror an open proxy; Node drops it silently unless answered.
  const connect = await new Promise<string>((resolve, reject) => {
    const sock = netConnect(Number(new URL(mirror.url).port), '127.0.0.1', () =>
      sock.write('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n'),
    )
    let data = ''
    sock.on('data', (c) => (data += c.toString()))
    sock.on('end', () => resolve(data))
    sock.on('error', reject)
  })
  t.match(connect, /^HTTP\/1\.1 405 /)
  t.match(connect, /"code":"UNSUPPORTED"/)
  for (const method of ['PUT', 'POST', 'PATCH', 'DELETE']) {
    const r = await get(`${mirror.url}/v2/library/alpine/manifests/latest`, {}, method)
    t.equal(r.status, 405, `${method} is refused`)
    t.equal(errorCode(r.body), 'UNSUPPORTED')
  }
})

t.test('malformed names, tags and digests are 400s with OCI codes', async (t) => {
  const { mirror } = await setup(t)
  const cases: [string, number, string][] = [
    ['/v2/Alpine/manifests/latest', 400, 'NAME_INVALID'],
    ['/v2/a/../../etc/manifests/latest', 400, 'NAME_INVALID'],
    ['/v2/../blobs/sha256:' + '0'.repeat(64), 400, 'NAME_INVALID'],
    ['/v2/a%00b/manifests/latest', 400, 'NAME_INVALID'],
    ['/v2/a%2Fb/manifests/latest', 400, 'NAME_INVALID'],
    ['/v2/alpine/manifests/-bad', 400, 'TAG_INVALID'],
    ['/v2/alpine/blobs/sha256:xyz', 400, 'DIGEST_INVALID'],
    ['/v2/alpine/blobs/md5:0123456789abcdef0123456789abcdef', 400, 'DIGEST_INVALID'],
    ['/v2/alpine/manifests/sha256:abc', 400, 'DIGEST_INVALID'],
    [`/v2/${'a'.repeat(300)}/manifests/latest`, 400, 'NAME_INVALID'],
    ['/v2/nothere.example.com/app/manifests/1', 404, 'NAME_UNKNOWN'],
  ]
  for (const [path, status, code] of cases) {
    const r = await rawRequest(mirror.url, path)
    t.equal(r.status, status, path)
    t.equal(errorCode(r.body), code, path)
  }
})

t.test('unknown manifest and blob are 404 with the OCI code', async (t) => {
  const { mirror } = await setup(t)
  const m = await get(`${mirror.url}/v2/library/nope/manifests/latest`, { accept: ACCEPT })
  t.equal(m.status, 404)
  t.equal(errorCode(m.body), 'MANIFEST_UNKNOWN')
  const b = await get(`${mirror.url}/v2/library/nope/blobs/sha256:${'0'.repeat(64)}`)
  t.equal(b.status, 404)
  t.equal(errorCode(b.body), 'BLOB_UNKNOWN')
})

t.test('HEAD answers headers without a body, with digest and length', async (t) => {
  const { fake, mirror } = await setup(t)
  const img = fake.addImage('library/busybox', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  const layer = img.blobs[1]!
  const hm = await get(`${mirror.url}/v2/busybox/manifests/1`, { accept: ACCEPT }, 'HEAD')
  t.equal(hm.status, 200)
  t.equal(hm.body.length, 0)
  t.equal(hm.headers.get('docker-content-digest'), img.digest)
  t.equal(Number(hm.headers.get('content-length')), img.manifests[0]!.body.length)
  for (const phase of ['cold', 'warm']) {
    const hb = await get(`${mirror.url}/v2/busybox/blobs/${layer.digest}`, {}, 'HEAD')
    t.equal(hb.status, 200, phase)
    t.equal(hb.body.length, 0)
    t.equal(hb.headers.get('docker-content-digest'), layer.digest)
    t.equal(Number(hb.headers.get('content-length')), layer.size)
    if (phase === 'cold') await get(`${mirror.url}/v2/busybox/blobs/${layer.digest}`)
  }
})

t.test('Range requests on a cold blob and on a cache hit', async (t) => {
  const { fake, mirror } = await setup(t)
  const img = fake.addImage('library/range', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [4000] })
  const layer = img.blobs.find((b) => b.size === 4000)!
  const url = `${mirror.url}/v2/range/blobs/${layer.digest}`
  for (const phase of ['cold', 'hit']) {
    const cases: [string, number, number, number][] = [
      ['bytes=500-1499', 206, 500, 1499],
      ['bytes=500-', 206, 500, 3999],
      ['bytes=-500', 206, 3500, 3999],
      ['bytes=3000-9999', 206, 3000, 3999],
    ]
    for (const [range, status, start, end] of cases) {
      const r = await get(url, { range })
      t.equal(r.status, status, `${phase} ${range}`)
      t.equal(r.headers.get('content-range'), `bytes ${start}-${end}/4000`, `${phase} ${range}`)
      t.same(r.body, layer.bytes.subarray(start, end + 1), `${phase} ${range} bytes`)
    }
    for (const range of ['bytes=500-0', 'bytes=4000-', 'bytes=9999-10000']) {
      const r = await get(url, { range })
      t.equal(r.status, 416, `${phase} ${range}`)
    }
    if (phase === 'cold') {
      const full = await get(url)
      t.same(full.body, layer.bytes)
    }
  }
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1, 'one upstream download served every range')
})

t.test('tag revalidation after the TTL uses HEAD, and a moved tag is followed', async (t) => {
  const { fake, mirror } = await setup(t, { tagTtl: '1500ms' })
  const a = fake.addImage('library/app', 'latest', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  const r1 = await get(`${mirror.url}/v2/app/manifests/latest`, { accept: ACCEPT })
  t.equal(r1.headers.get('docker-content-digest'), a.digest)
  fake.reset()
  await get(`${mirror.url}/v2/app/manifests/latest`, { accept: ACCEPT })
  t.equal(fake.count({ server: 'registry' }), 0, 'within the TTL: no upstream request')
  await sleep(1600)
  const r2 = await get(`${mirror.url}/v2/app/manifests/latest`, { accept: ACCEPT })
  t.equal(r2.headers.get('docker-content-digest'), a.digest)
  t.ok(fake.count({ server: 'registry', method: 'HEAD', path: '/v2/library/app/manifests/latest' }) >= 1, 'revalidated with HEAD')
  t.equal(fake.count({ server: 'registry', method: 'GET', path: /manifests/ }), 0, 'no manifest GET when the digest is unchanged')
  const b = fake.addImage('library/app', 'latest', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  await sleep(1600)
  const r3 = await get(`${mirror.url}/v2/app/manifests/latest`, { accept: ACCEPT })
  t.equal(r3.headers.get('docker-content-digest'), b.digest, 'the moved tag is seen after the TTL')
  t.equal(sha256(r3.body), b.digest)
})

t.test('wrong bytes from upstream: the response is broken off and nothing is cached', async (t) => {
  const { fake, mirror } = await setup(t)
  const img = fake.addImage('library/bad', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [300_000] })
  const layer = img.blobs.find((b) => b.size === 300_000)!
  fake.fault({ kind: 'wrongBytes', match: { server: 'cdn' }, times: 1 })
  const url = `${mirror.url}/v2/bad/blobs/${layer.digest}`
  await t.rejects(get(url), 'the client sees a broken response, not a complete wrong body')
  const again = await get(url)
  t.equal(again.status, 200, 'the next request starts a new fill')
  t.equal(sha256(again.body), layer.digest)
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 2, 'the bad download was not cached')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_digest_mismatches_total\{kind="blob"\} 1/)
})

t.test('a manifest whose bytes do not match its digest is refused', async (t) => {
  const { fake, mirror } = await setup(t)
  const img = fake.addImage('library/mm', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  fake.fault({ kind: 'wrongBytes', match: { server: 'registry', path: /manifests/ } })
  const r = await get(`${mirror.url}/v2/mm/manifests/${img.digest}`, { accept: ACCEPT })
  t.equal(r.status, 502)
  fake.clearFaults()
  const ok = await get(`${mirror.url}/v2/mm/manifests/${img.digest}`, { accept: ACCEPT })
  t.equal(ok.status, 200)
  t.equal(sha256(ok.body), img.digest)
})

t.test('tags list is passed through with n and last', async (t) => {
  const { fake, mirror } = await setup(t)
  for (const tag of ['a', 'b', 'c'])
    fake.addImage('library/tl', tag, { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const r = await get(`${mirror.url}/v2/tl/tags/list?n=2`)
  t.equal(r.status, 200)
  t.same(JSON.parse(r.body.toString()).tags, ['a', 'b'])
  t.match(r.headers.get('link') ?? '', /^<\/v2\/tl\/tags\/list\?.*last=b.*>; rel="next"$/)
  const r2 = await get(`${mirror.url}/v2/tl/tags/list?n=2&last=b`)
  t.same(JSON.parse(r2.body.toString()).tags, ['c'])
})

t.test('tags survive a restart', async (t) => {
  const fake: FakeRegistry = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/keep', '1')
  const m1 = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  await pull(t, m1.url, 'keep', '1')
  await m1.close()
  fake.reset()
  const m2 = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] }, { dataDir: m1.dataDir })
  const r = await pull(t, m2.url, 'keep', '1')
  t.equal(r.headers.get('docker-content-digest'), img.digest)
  t.equal(fake.count({ server: 'cdn' }), 0, 'blobs come from disk after the restart')
  t.equal(fake.count({ server: 'registry', method: 'GET' }), 0, 'manifests come from disk after the restart')
})

t.test('Accept negotiation follows distribution', async (t) => {
  const { fake, mirror } = await setup(t)
  const docker = fake.addImage('library/dlist', '1', { format: 'docker' })
  const oci = fake.addImage('library/oindex', '1')
  const single = 'application/vnd.docker.distribution.manifest.v2+json'
  // An old client that only knows single Docker manifests gets the linux/amd64 one from a manifest list.
  const r = await get(`${mirror.url}/v2/dlist/manifests/1`, { accept: single })
  t.equal(r.status, 200)
  const amd64 = docker.manifests.find((m) => m.platform?.architecture === 'amd64')!
  t.equal(r.headers.get('docker-content-digest'), amd64.digest)
  t.equal(r.headers.get('content-type'), single)
  t.equal(sha256(r.body), amd64.digest)
  // An OCI index the client cannot accept is MANIFEST_UNKNOWN, as distribution answers.
  const o = await get(`${mirror.url}/v2/oindex/manifests/1`, { accept: single })
  t.equal(o.status, 404)
  t.equal(errorCode(o.body), 'MANIFEST_UNKNOWN')
  // No Accept header: the stored type, byte for byte.
  const n = await get(`${mirror.url}/v2/oindex/manifests/1`)
  t.equal(n.status, 200)
  t.equal(n.headers.get('docker-content-digest'), oci.digest)
  t.equal(n.headers.get('content-type'), oci.mediaType)
  // A wildcard accepts anything.
  const w = await get(`${mirror.url}/v2/oindex/manifests/1`, { accept: '*/*' })
  t.equal(w.headers.get('docker-content-digest'), oci.digest)
})

t.test('cache hits read into reused buffers: concurrent, ranged, slow and abandoned readers all get the right bytes', async (t) => {
  const { fake, mirror } = await setup(t)
  // Several 256 KiB chunks each, distinct content: a buffer reused before the socket took its
  // bytes would show up as another blob's (or another offset's) bytes in some response.
  const blobs = [0, 1, 2, 3].map((i) => {
    const bytes = randomBytes(3 * 1024 * 1024 + 1234 * i)
    return { bytes, digest: fake.addBlob(bytes) }
  })
  const url = (d: string) => `${mirror.url}/v2/library/pool/blobs/${d}`
  for (const b of blobs) t.equal(sha256((await get(url(b.digest))).body), b.digest, 'filled')
  fake.reset()
  // A reader that stops reading mid-body and goes away must not disturb the others.
  const abandoned = await new Promise<number>((resolve, reject) => {
    const u = new URL(url(blobs[0]!.digest))
    const sock = netConnect(Number(u.port), u.hostname, () => {
      sock.write(`GET ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\n\r\n`)
    })
    let got = 0
    sock.on('data', (c: Buffer) => {
      got += c.length
      if (got > 300_000) {
        sock.pause()
        setTimeout(() => sock.destroy(), 200)
      }
    })
    sock.on('close', () => resolve(got))
    sock.on('error', reject)
  })
  t.ok(abandoned < blobs[0]!.bytes.length, 'the abandoned reader went away mid-body')
  const ranges = await Promise.all(
    blobs.flatMap((b) => [
      get(url(b.digest)).then((r) => ({ ok: r.body.equals(b.bytes), what: `whole ${b.digest.slice(7, 15)}` })),
      get(url(b.digest), { range: 'bytes=262143-1048577' }).then((r) => ({
        ok: r.status === 206 && r.body.equals(b.bytes.subarray(262143, 1048578)),
        what: `range ${b.digest.slice(7, 15)}`,
      })),
    ]),
  )
  for (const r of ranges) t.ok(r.ok, `${r.what}: the right bytes`)
  // A slow reader: backpressure holds the sender between chunks.
  const slow = await new Promise<Buffer>((resolve, reject) => {
    const u = new URL(url(blobs[3]!.digest))
    const chunks: Buffer[] = []
    const sock = netConnect(Number(u.port), u.hostname, () => {
      sock.write(`GET ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\nconnection: close\r\n\r\n`)
    })
    sock.on('data', (c: Buffer) => {
      chunks.push(c)
      sock.pause()
      setTimeout(() => sock.resume(), 2)
    })
    sock.on('end', () => resolve(Buffer.concat(chunks)))
    sock.on('error', reject)
  })
  const body = slow.subarray(slow.indexOf('\r\n\r\n') + 4)
  t.ok(body.equals(blobs[3]!.bytes), 'the slow reader got every byte, in order')
  t.equal(fake.requests.length, 0, 'all from the cache')
})
