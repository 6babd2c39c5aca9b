import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { constants } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { readFileSync } from 'node:fs'
import type { Test } from 'tap'
import t from 'tap'
import { makeCa, makeServerCert, type TestCa } from '../helpers/certs.js'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { h2connect, h2get } from '../helpers/h2-client.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_ALL_MANIFESTS as OCI_ACCEPT } from '../helpers/oci-http.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { sleep } from '../helpers/sleep.js'

const MiB = 1024 * 1024

async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'regmirror-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ca = await makeCa(dir)
  const { cert, key } = await makeServerCert(ca, 'first')
  // The listener reads these paths; tests rotate by copying other pairs over them.
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  await copyFile(cert, certFile)
  await copyFile(key, keyFile)
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const img = hub.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: Array(8).fill(300_000) })
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url }],
    server: { reloadInterval: '100ms', tls: { cert: certFile, key: keyFile, listen: '127.0.0.1:0' } },
    ...extra,
  })
  return { dir, ca, certFile, keyFile, hub, img, mirror, tlsUrl: mirror.tlsUrl! }
}

/** The CN of the certificate a fresh TLS connection gets. */
function servedCn(url: string, ca: TestCa): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: u.hostname, port: Number(u.port), ca: readFileSync(ca.caCert), ALPNProtocols: ['h2'] }, () => {
      resolve(String(s.getPeerCertificate().subject.CN))
      s.end()
    })
    s.on('error', reject)
  })
}

function https1(url: string, ca: TestCa, opts: { maxVersion?: 'TLSv1.1' | 'TLSv1.2' } = {}): Promise<{ status: number; version: string }> {
  return new Promise((resolve, reject) => {
    const tlsOpts = { ca: readFileSync(ca.caCert), ALPNProtocols: ['http/1.1'], maxVersion: opts.maxVersion, minVersion: 'TLSv1' as const }
    const req = httpsRequest(url, tlsOpts as Parameters<typeof httpsRequest>[1], (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.httpVersion }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('TLS: HTTP/2 and HTTP/1.1 on one port by ALPN, TLS 1.2 at least, the plain listener beside it', async (t) => {
  const { ca, tlsUrl, mirror } = await setup(t)
  const session = await h2connect(tlsUrl, ca.caCert)
  t.teardown(() => session.close())
  t.equal(session.alpnProtocol, 'h2', 'HTTP/2 negotiated')
  const base = await h2get(session, '/v2/')
  t.equal(base.status, 200)
  t.equal(base.headers['docker-distribution-api-version'], 'registry/2.0')
  t.same(await https1(`${tlsUrl}/v2/`, ca), { status: 200, version: '1.1' }, 'HTTP/1.1 over TLS on the same port')
  t.equal((await get(`${mirror.url}/v2/`)).status, 200, 'the plain listener stays')
  await t.rejects(https1(`${tlsUrl}/v2/`, ca, { maxVersion: 'TLSv1.1' }), 'TLS 1.1 is refused')
  // A header list beyond server.maxHeaderSize is refused on HTTP/2 too, and the session serves on.
  await t.rejects(h2get(session, '/v2/', { 'x-big': 'a'.repeat(40_000) }), 'an oversized header list is refused')
  const after = await h2connect(tlsUrl, ca.caCert)
  t.equal((await h2get(after, '/v2/')).status, 200, 'and the listener serves on')
  after.close()
})

t.test('HTTP/2: a whole image over one connection, cold then from the cache (sent from the file), Range included', async (t) => {
  const { ca, tlsUrl, img, mirror } = await setup(t)
  const session = await h2connect(tlsUrl, ca.caCert)
  t.teardown(() => session.close())
  const tag = await h2get(session, '/v2/app/manifests/1', { accept: OCI_ACCEPT })
  t.equal(tag.status, 200)
  t.equal(sha256(tag.body), img.digest)
  for (const phase of ['miss', 'hit']) {
    const got = await Promise.all(img.blobs.map((b) => h2get(session, `/v2/app/blobs/${b.digest}`)))
    got.forEach((g, i) => {
      t.equal(sha256(g.body), img.blobs[i]!.digest, `${phase}: blob ${i} verified`)
      t.equal(g.headers['x-regmirror-cache'], phase)
    })
  }
  const layer = img.blobs.find((b) => b.size === 300_000)!
  const part = await h2get(session, `/v2/app/blobs/${layer.digest}`, { range: 'bytes=1000-1999' })
  t.equal(part.status, 206)
  t.same(part.body, layer.bytes.subarray(1000, 2000))
  t.equal(part.headers['content-range'], `bytes 1000-1999/${layer.size}`)
  t.match(part.headers['x-request-id'], /^[0-9a-f]{8}-/, 'the request id comes with a hit sent from the file')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  const served = Number(/regmirror_served_bytes_total\{source="cache"\} (\d+)/.exec(metrics)?.[1])
  t.ok(served >= img.blobs.reduce((n, b) => n + b.size, 0) + 1000, `hits sent from the file are counted (${served})`)
  t.ok(
    mirror.logs.some((l) => l.includes(layer.digest) && l.includes('"status":206') && !l.includes('"aborted"')),
    'and logged as complete',
  )
})

t.test('certificate rotation: a download in flight finishes, new connections get the new pair; a broken pair keeps the old', async (t) => {
  const { ca, dir, certFile, keyFile, tlsUrl, hub, mirror } = await setup(t)
  const big = Buffer.alloc(4 * MiB, 7)
  const digest = hub.addBlob(big)
  hub.fault({ kind: 'slow', bytesPerSecond: 8 * MiB, match: { server: 'cdn' } })
  t.equal(await servedCn(tlsUrl, ca), 'first')
  const session = await h2connect(tlsUrl, ca.caCert)
  t.teardown(() => session.close())
  const download = h2get(session, `/v2/library/big/blobs/${digest}`)
  await sleep(100)
  const second = await makeServerCert(ca, 'second')
  await copyFile(second.key, keyFile)
  await copyFile(second.cert, certFile)
  for (let i = 0; i < 50 && !mirror.logs.some((l) => l.includes('TLS certificate reloaded')); i++) await sleep(50)
  t.equal(await servedCn(tlsUrl, ca), 'second', 'a new connection gets the new certificate')
  const got = await download
  t.equal(sha256(got.body), digest, 'the download that was in flight completed, verified')

  // A key that does not belong to the certificate: the second pair stays.
  const third = await makeServerCert(ca, 'third')
  await copyFile(third.cert, certFile)
  await copyFile(join(dir, 'first.key'), keyFile)
  for (let i = 0; i < 50 && !mirror.logs.some((l) => l.includes('new TLS certificate not loaded')); i++) await sleep(50)
  t.ok(
    mirror.logs.some((l) => l.includes('new TLS certificate not loaded')),
    'the broken pair is logged',
  )
  t.equal(await servedCn(tlsUrl, ca), 'second', 'and the last good pair is still served')
})

t.test('a stream-reset flood (rapid reset) on one connection ends that session, and another client pulls undisturbed', async (t) => {
  const { ca, tlsUrl, hub } = await setup(t)
  const blob = Buffer.alloc(16 * MiB, 3)
  const digest = hub.addBlob(blob)
  // The flood asks for something that takes a while (the upstream is slow to answer this tag), so every
  // stream costs the mirror a request in flight, and resets it before the answer: "rapid reset".
  hub.addImage('library/slow', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  hub.fault({ kind: 'delayHeaders', ms: 2000, match: { server: 'registry', path: /slow\/manifests/ } })
  const flood = await h2connect(tlsUrl, ca.caCert)
  let goaway: number | undefined
  flood.on('goaway', (code: number) => (goaway = code))
  flood.on('close', () => (goaway ??= -1))
  const victim = await h2connect(tlsUrl, ca.caCert)
  t.teardown(() => victim.close())
  const pull = h2get(victim, `/v2/library/big/blobs/${digest}`)
  let resets = 0
  while (goaway === undefined && !flood.destroyed && resets < 20_000) {
    for (let i = 0; i < 50 && !flood.destroyed && !flood.closed; i++) {
      const s = flood.request({ ':path': '/v2/slow/manifests/1' })
      s.on('error', () => {})
      s.close(constants.NGHTTP2_CANCEL)
      resets++
    }
    await sleep(1)
  }
  t.not(goaway, undefined, `the server ended the flooding session (GOAWAY ${goaway}) after ${resets} streams`)
  t.ok(resets < 20_000, 'long before the flood was over')
  t.equal(sha256((await pull).body), digest, 'the other client got its blob, verified')
  const again = await h2connect(tlsUrl, ca.caCert)
  t.equal((await h2get(again, '/v2/')).status, 200, 'new sessions are served')
  again.close()
})
