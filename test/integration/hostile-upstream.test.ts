import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { MediaTypes, sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { nonLoopbackIPv4 } from '../helpers/local-address.js'
import { get, startMirror, type TestMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_ALL_MANIFESTS, errorCode } from '../helpers/oci-http.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [200_000] }

interface Internal {
  url: string
  port: number
  /** every request it received */
  seen: string[]
  /** sockets that the peer closed while this server was still sending */
  hungUp: number
}

/** A plain HTTP server standing in for something the mirror must not read (cloud metadata, an admin port). */
async function internalServer(
  t: Test,
  handler?: (req: IncomingMessage, res: ServerResponse, socket: Socket) => void,
): Promise<Internal & { server: Server }> {
  const state = { seen: [] as string[], hungUp: 0 }
  const sockets = new Set<Socket>()
  const server = createServer((req, res) => {
    state.seen.push(`${req.method} ${req.url}`)
    if (handler) handler(req, res, req.socket)
    else {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"secret":"internal"}')
    }
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  )
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    port,
    get seen() {
      return state.seen
    },
    get hungUp() {
      return state.hungUp
    },
    set hungUp(n: number) {
      state.hungUp = n
    },
  }
}

async function fake(t: Test, opts: Parameters<typeof startFakeRegistry>[0] = {}): Promise<FakeRegistry> {
  const f = await startFakeRegistry(opts)
  t.teardown(() => f.close())
  return f
}

async function metrics(mirror: TestMirror): Promise<string> {
  return (await get(`${mirror.url}/metrics`)).body.toString()
}

async function cachedFiles(mirror: TestMirror): Promise<string[]> {
  const out: string[] = []
  const root = join(mirror.dataDir, 'blobs', 'sha256')
  for (const p of await readdir(root).catch(() => [])) for (const n of await readdir(join(root, p))) out.push(`sha256:${n}`)
  return out
}

const upstreamHost = nonLoopbackIPv4()

t.test(
  'redirects and token realms never reach loopback or link-local addresses of an upstream that is not there',
  { skip: upstreamHost ? false : 'this machine has no address but loopback' },
  async (t) => {
    const internal = await internalServer(t)
    const hub = await fake(t, { host: upstreamHost })
    const img = hub.addImage('library/app', '1', ONE)
    const layer = img.blobs.find((b) => b.size === 200_000)!
    const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], retries: { attempts: 1, resumeAttempts: 0 } })

    const targets = [
      `${internal.url}/blob`,
      `http://localhost:${internal.port}/blob`,
      'http://169.254.169.254/latest/meta-data/',
      `http://[::1]:${internal.port}/blob`,
    ]
    for (const location of targets) {
      hub.fault({ kind: 'redirect', location, match: { server: 'registry', path: /\/blobs\// }, times: 1 })
      const r = await get(`${mirror.url}/v2/app/blobs/${layer.digest}`)
      t.equal(r.status, 502, `blob redirect to ${location}: a gateway error`)
      t.equal(errorCode(r.body), 'UNAVAILABLE')
    }
    hub.fault({
      kind: 'redirect',
      location: `http://localhost:${internal.port}/manifest`,
      match: { server: 'registry', path: /manifests\/1$/ },
      times: 1,
    })
    const tag = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(tag.status, 502, 'a tag redirected to loopback is refused')
    t.same(internal.seen, [], 'the internal server was never contacted')
    t.same(await cachedFiles(mirror), [], 'nothing cached')
    t.match(await metrics(mirror), /regmirror_upstream_refused_total\{upstream="docker.io",kind="blob",cause="address_denied"\} 4/)
    t.ok(
      mirror.logs.some((l) => l.includes('loopback address')),
      'the log says why',
    )

    // The same pulls work once the redirects stop: the upstream was not marked broken for good.
    const again = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(again.status, 200)
    t.equal(sha256(again.body), img.digest)
    t.equal(sha256((await get(`${mirror.url}/v2/app/blobs/${layer.digest}`)).body), layer.digest)
  },
)

t.test(
  'allowedNetworks opens a range to one upstream, and the upstream own range is open by itself',
  { skip: upstreamHost ? false : 'this machine has no address but loopback' },
  async (t) => {
    const hub = await fake(t, { host: upstreamHost })
    const img = hub.addImage('library/app', '1', ONE)
    const layer = img.blobs.find((b) => b.size === 200_000)!
    const internal = await internalServer(t, (_req, res) => {
      res.writeHead(200, { 'content-length': layer.size })
      res.end(layer.bytes)
    })
    hub.fault({ kind: 'redirect', location: `${internal.url}/blob`, match: { server: 'registry', path: /\/blobs\// } })
    const allowed = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url, allowedNetworks: ['127.0.0.0/8'] }] })
    const r = await get(`${allowed.url}/v2/app/blobs/${layer.digest}`)
    t.equal(r.status, 200)
    t.equal(sha256(r.body), layer.digest)
    t.equal(internal.seen.length, 1, 'the allowed network was used')

    // A loopback upstream may redirect to loopback (its own class): the fake registry's CDN is such a case.
    const local = await fake(t)
    const limg = local.addImage('library/app', '1', ONE)
    const own = await startMirror(t, { upstreams: [{ name: 'docker.io', url: local.url }] })
    const lb = limg.blobs.find((b) => b.size === 200_000)!
    t.equal(sha256((await get(`${own.url}/v2/app/blobs/${lb.digest}`)).body), lb.digest)
    t.equal(local.count({ server: 'cdn' }), 1, 'the redirect to the CDN on loopback was followed')
  },
)

t.test(
  'a token realm that resolves to loopback is refused for an upstream elsewhere, even when listed',
  { skip: upstreamHost ? false : 'this machine has no address but loopback' },
  async (t) => {
    const internal = await internalServer(t)
    const hub = await fake(t, { host: upstreamHost, realm: `http://localhost:${internal.port}/token` })
    hub.addImage('library/app', '1', ONE)
    const mirror = await startMirror(t, {
      upstreams: [{ name: 'docker.io', url: hub.url, realms: ['localhost'] }],
      retries: { attempts: 1 },
    })
    const r = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(r.status, 502)
    t.same(internal.seen, [], 'the realm on loopback was never asked')
  },
)

t.test('a token response without end is cut off at a small bound, and one that drips is timed out', async (t) => {
  let written = 0
  const endless = await internalServer(t, (_req, res, socket) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"token":"')
    const chunk = Buffer.alloc(64 * 1024, 'a')
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) written += chunk.length
      if (!res.destroyed) res.once('drain', pump)
    }
    socket.once('close', () => endless.hungUp++)
    pump()
  })
  const hub = await fake(t, { realm: `${endless.url}/token` })
  hub.addImage('library/app', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], retries: { attempts: 1 } })
  const r = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
  t.equal(r.status, 502, 'the client gets a gateway error')
  for (let i = 0; i < 100 && endless.hungUp === 0; i++) await sleep(20)
  t.equal(endless.hungUp, 1, 'the mirror hung up on the endless token response')
  t.ok(written < 64 * 1024 * 1024, `it stopped reading early (${written} bytes sent into the socket)`)

  const drip = await internalServer(t, (_req, res, socket) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{"token":"')
    const timer = setInterval(() => res.write('a'), 100)
    socket.once('close', () => {
      clearInterval(timer)
      drip.hungUp++
    })
  })
  const slow = await fake(t, { realm: `${drip.url}/token` })
  slow.addImage('library/app', '1', ONE)
  const m2 = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: slow.url }],
    retries: { attempts: 1 },
    timeouts: { bodyIdle: '600ms' },
  })
  const d = await get(`${m2.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
  t.equal(d.status, 503, 'a token that never finishes arriving times out')
  t.equal(errorCode(d.body), 'UNAVAILABLE')
  for (let i = 0; i < 100 && drip.hungUp === 0; i++) await sleep(20)
  t.equal(drip.hungUp, 1, 'and the mirror hung up')
})

t.test('an offline upstream whose probe is refused (401, bad redirect) comes back instead of staying offline', async (t) => {
  const hub = await fake(t)
  const img = hub.addImage('library/app', '1', ONE)
  hub.addImage('private/app', '1', ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url }],
    retries: { attempts: 1 },
    offline: { failureThreshold: 1, coolDown: '300ms' },
  })
  const online = async () => /regmirror_upstream_online\{upstream="docker.io"\} (\d)/.exec(await metrics(mirror))?.[1]
  for (const [name, fault] of [
    ['a 401 without a challenge', { kind: 'status', status: 401 }],
    ['a redirect to ftp://', { kind: 'redirect', location: 'ftp://example.invalid/x' }],
  ] as const) {
    hub.fault({ kind: 'status', status: 503, match: { server: 'registry' }, times: 1 })
    t.equal((await get(`${mirror.url}/v2/app/manifests/never-pulled`, { accept: ACCEPT_ALL_MANIFESTS })).status, 502)
    t.equal(await online(), '0', `${name}: offline after a failure`)
    await sleep(350)
    // The probe: a repository whose answer is a refusal, not a failure.
    hub.fault({ ...fault, match: { server: 'registry', path: /private/ }, times: 1 })
    const probe = await get(`${mirror.url}/v2/private/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.not(probe.status, 200, `${name}: the probe was refused (${probe.status})`)
    const next = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(next.status, 200, `${name}: the next request reaches the upstream`)
    t.equal(sha256(next.body), img.digest)
    t.equal(await online(), '1', `${name}: online again`)
  }
})

t.test('a malformed Docker-Content-Digest on revalidation is the upstream failing: the cached tag is served stale', async (t) => {
  const hub = await fake(t)
  const img = hub.addImage('library/app', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], tagTtl: '10ms' })
  t.equal((await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })).status, 200)
  for (const bad of [`sha256:${'z'.repeat(64)}`, 'sha256:abc', 'md5:0', '../../etc']) {
    await sleep(20)
    hub.fault({ kind: 'header', name: 'docker-content-digest', value: bad, match: { method: 'HEAD', path: /manifests\/1$/ }, times: 1 })
    const r = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(r.status, 200, `${bad}: served`)
    t.equal(r.headers.get('x-regmirror-cache'), 'stale', `${bad}: stale`)
    t.equal(sha256(r.body), img.digest)
  }
})

t.test('what is not a manifest is never cached or served as one, whatever its Content-Type', async (t) => {
  const hub = await fake(t)
  const img = hub.addImage('library/app', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], retries: { attempts: 1 } })
  const bodies: [string, Record<string, string>, string | Buffer][] = [
    ['an HTML page', { 'content-type': 'text/html' }, '<html><body>Welcome to nginx!</body></html>'],
    ['binary garbage called an OCI manifest', { 'content-type': MediaTypes.ociManifest }, Buffer.from([0xff, 0x00, 0x7b, 0x22, 0x01])],
    ['JSON without a manifest type', { 'content-type': 'application/json' }, '{"hello":"world"}'],
    ['an image config called a manifest', { 'content-type': MediaTypes.ociManifest }, img.manifests[0]!.config.bytes],
    [
      'a manifest with a broken descriptor',
      { 'content-type': MediaTypes.ociManifest },
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.ociManifest,
        config: { mediaType: 'x/y', digest: 'nope', size: 1 },
        layers: [],
      }),
    ],
  ]
  for (const [name, headers, body] of bodies) {
    hub.fault({ kind: 'reply', status: 200, headers, body, match: { server: 'registry', path: /manifests\/other$/ }, times: 1 })
    const r = await get(`${mirror.url}/v2/app/manifests/other`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(r.status, 502, `${name}: refused`)
  }
  t.same(await cachedFiles(mirror), [], 'nothing cached')
  t.match(
    await metrics(mirror),
    /regmirror_upstream_refused_total\{upstream="docker.io",kind="manifest",cause="upstream_manifest_invalid"\} 5/,
  )

  // Content that is in the cache as a blob is not a manifest because someone asks for it as one.
  const config = img.manifests[0]!.config
  t.equal(sha256((await get(`${mirror.url}/v2/app/blobs/${config.digest}`)).body), config.digest)
  const asManifest = await get(`${mirror.url}/v2/app/manifests/${config.digest}`, { accept: ACCEPT_ALL_MANIFESTS })
  t.equal(asManifest.status, 404, 'an image config is not served from /manifests/')
  t.equal(errorCode(asManifest.body), 'MANIFEST_UNKNOWN')
})

t.test('a layer in the cache asked for as a manifest is never read into memory', async (t) => {
  const hub = await fake(t)
  const big = 48 * 1024 * 1024
  const img = hub.addImage('library/big', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [big] })
  const layer = img.blobs.find((b) => b.size === big)!
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }] })
  t.equal(sha256((await get(`${mirror.url}/v2/big/blobs/${layer.digest}`)).body), layer.digest)
  hub.deleteBlob(layer.digest)
  const before = process.memoryUsage().arrayBuffers
  let peak = before
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers)), 2)
  const answers = await Promise.all(
    Array.from({ length: 8 }, () => get(`${mirror.url}/v2/big/manifests/${layer.digest}`, { accept: ACCEPT_ALL_MANIFESTS })),
  )
  clearInterval(sampler)
  for (const a of answers) {
    t.equal(a.status, 404)
    t.equal(errorCode(a.body), 'MANIFEST_UNKNOWN')
  }
  t.ok(peak - before < 2 * big, `memory did not grow by the layer per request (${Math.round((peak - before) / 1048576)} MiB)`)
})

t.test('an empty 200 for a blob that is not empty is a mismatch, never a complete empty answer', async (t) => {
  const hub = await fake(t)
  const img = hub.addImage('library/app', '1', ONE)
  const layer = img.blobs.find((b) => b.size === 200_000)!
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], retries: { attempts: 1, resumeAttempts: 0 } })
  hub.fault({ kind: 'reply', status: 200, headers: { 'content-type': 'application/octet-stream' }, match: { server: 'cdn' }, times: 1 })
  const r = await get(`${mirror.url}/v2/app/blobs/${layer.digest}`)
  t.equal(r.status, 502, 'refused before any header went out')
  t.same(await cachedFiles(mirror), [])
  t.match(await metrics(mirror), /regmirror_fills_failed_total\{cause="digest_mismatch"\} 1/)
  const ok = await get(`${mirror.url}/v2/app/blobs/${layer.digest}`)
  t.equal(sha256(ok.body), layer.digest, 'the next pull gets the real blob')
})

t.test('a manifest by digest answered with another, self-consistent manifest is refused', async (t) => {
  const hub = await fake(t)
  const a = hub.addImage('library/app', 'a', ONE)
  const b = hub.addImage('library/app', 'b', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], retries: { attempts: 1 } })
  // Header and body agree with each other (b), not with the digest asked for (a).
  hub.fault({
    kind: 'redirect',
    location: `/v2/library/app/manifests/${b.digest}`,
    match: { server: 'registry', path: `/v2/library/app/manifests/${a.digest}` },
    times: 1,
  })
  const r = await get(`${mirror.url}/v2/app/manifests/${a.digest}`, { accept: ACCEPT_ALL_MANIFESTS })
  t.equal(r.status, 502)
  t.same(await cachedFiles(mirror), [], 'the other manifest was not cached')
  t.match(await metrics(mirror), /regmirror_digest_mismatches_total\{kind="manifest"\} 1/)
  const ok = await get(`${mirror.url}/v2/app/manifests/${a.digest}`, { accept: ACCEPT_ALL_MANIFESTS })
  t.equal(sha256(ok.body), a.digest)
})

t.test('a cached blob removed from disk under the running mirror is fetched again, for GET and HEAD', async (t) => {
  const hub = await fake(t)
  const img = hub.addImage('library/app', '1', ONE)
  const layer = img.blobs.find((b) => b.size === 200_000)!
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }] })
  const url = `${mirror.url}/v2/app/blobs/${layer.digest}`
  const path = join(mirror.dataDir, 'blobs', 'sha256', layer.digest.slice(7, 9), layer.digest.slice(7))
  t.equal(sha256((await get(url)).body), layer.digest)
  const { unlink, truncate } = await import('node:fs/promises')
  await unlink(path)
  const head = await get(url, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers.get('x-regmirror-cache'), 'miss', 'HEAD does not claim a hit for a file that is gone')
  const r = await get(url)
  t.equal(r.status, 200)
  t.equal(sha256(r.body), layer.digest, 'GET gets every byte, from upstream')
  t.equal(r.headers.get('x-regmirror-cache'), 'miss')
  t.equal((await stat(path)).size, layer.size, 'and the blob is cached again')
  t.equal((await get(url)).headers.get('x-regmirror-cache'), 'hit')

  await truncate(path, 1000)
  const cut = await get(url)
  t.equal(sha256(cut.body), layer.digest, 'a file cut short is not served either')
  t.equal(cut.headers.get('x-regmirror-cache'), 'miss')
})
