// Self-test of the fake registry (test infrastructure that integration tests depend on).
import t, { type Test } from 'tap'
import { startFakeRegistry, sha256, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { sleep } from '../helpers/sleep.js'
import { errorCode } from '../helpers/oci-http.js'

function challengeParams(h: string | null): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of (h ?? '').matchAll(/(\w+)="([^"]*)"/g)) out[m[1]!] = m[2]!
  return out
}

async function token(t: Test, fake: FakeRegistry, ...repos: string[]): Promise<string> {
  const q = new URLSearchParams({ service: fake.service })
  for (const r of repos) q.append('scope', `repository:${r}:pull`)
  const res = await fetch(`${fake.authUrl}/token?${q}`)
  t.equal(res.status, 200)
  const body = (await res.json()) as { token: string; access_token: string; expires_in: number; issued_at: string }
  t.equal(body.token, body.access_token)
  return body.token
}

t.test('bearer: 401 challenge, token, scoped access', async (t) => {
  const fake = await startFakeRegistry({ tokenTtlSeconds: 120 })
  t.teardown(() => fake.close())
  const img = fake.addImage('library/alpine', '3.20')
  fake.addImage('owner/app', 'v1', { platforms: [{ os: 'linux', architecture: 'amd64' }], format: 'docker' })

  const base = await fetch(`${fake.url}/v2/`)
  t.equal(base.status, 401)
  const ch = challengeParams(base.headers.get('www-authenticate'))
  t.equal(ch.realm, `${fake.authUrl}/token`)
  t.equal(ch.service, 'fake-registry')
  t.notOk('scope' in ch, 'no scope for /v2/')

  const unauth = await fetch(`${fake.url}/v2/library/alpine/manifests/3.20`)
  t.equal(unauth.status, 401)
  t.equal(challengeParams(unauth.headers.get('www-authenticate')).scope, 'repository:library/alpine:pull')
  t.equal(errorCode(await unauth.text()), 'UNAUTHORIZED')

  const tok = await token(t, fake, 'library/alpine')
  const auth = { authorization: `Bearer ${tok}` }
  const ok = await fetch(`${fake.url}/v2/`, { headers: auth })
  t.equal(ok.status, 200)
  t.equal(ok.headers.get('docker-distribution-api-version'), 'registry/2.0')

  const man = await fetch(`${fake.url}/v2/library/alpine/manifests/3.20`, { headers: auth })
  t.equal(man.status, 200)
  const body = Buffer.from(await man.arrayBuffer())
  t.equal(sha256(body), img.digest)
  t.equal(man.headers.get('docker-content-digest'), img.digest)
  t.equal(man.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json')
  t.equal(man.headers.get('etag'), `"${img.digest}"`)
  t.equal(man.headers.get('content-length'), String(body.length))

  const head = await fetch(`${fake.url}/v2/library/alpine/manifests/${img.manifests[1]!.digest}`, { method: 'HEAD', headers: auth })
  t.equal(head.status, 200)
  t.equal(head.headers.get('content-length'), String(img.manifests[1]!.body.length))
  t.equal(head.headers.get('content-type'), 'application/vnd.oci.image.manifest.v1+json')

  const notAccepted = await fetch(`${fake.url}/v2/library/alpine/manifests/3.20`, {
    headers: { ...auth, accept: 'application/vnd.oci.image.manifest.v1+json' },
  })
  t.equal(notAccepted.status, 404, 'stored type not in Accept')
  const unknown = await fetch(`${fake.url}/v2/library/alpine/manifests/nope`, { headers: auth })
  t.equal(unknown.status, 404)
  t.equal(errorCode(await unknown.text()), 'MANIFEST_UNKNOWN')

  const other = await fetch(`${fake.url}/v2/owner/app/manifests/v1`, { headers: auth })
  t.equal(other.status, 401, 'token for repo A is not valid for repo B')
  t.match(other.headers.get('www-authenticate'), /error="insufficient_scope"/)
  const both = await token(t, fake, 'library/alpine', 'owner/app')
  const other2 = await fetch(`${fake.url}/v2/owner/app/manifests/v1`, { headers: { authorization: `Bearer ${both}` } })
  t.equal(other2.status, 200)
  t.equal(other2.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json')

  fake.expireTokens()
  t.equal((await fetch(`${fake.url}/v2/`, { headers: auth })).status, 401, 'expired')

  t.equal(fake.count({ server: 'auth', path: '/token' }), 2)
  t.notOk(fake.requests.find((r) => r.server === 'auth')?.headers.authorization, 'anonymous token requests')
  t.equal(fake.count({ server: 'registry', method: 'GET', path: /\/manifests\// }), 6)
  fake.reset()
  t.equal(fake.requests.length, 0)
})

t.test('credentials: token endpoint requires Basic', async (t) => {
  const fake = await startFakeRegistry({ credentials: { username: 'u', password: 'p' } })
  t.teardown(() => fake.close())
  const anon = await fetch(`${fake.authUrl}/token?service=fake-registry&scope=repository:a/b:pull`)
  t.equal(anon.status, 401)
  const wrong = await fetch(`${fake.authUrl}/token?scope=repository:a/b:pull`, {
    headers: { authorization: 'Basic ' + Buffer.from('u:x').toString('base64') },
  })
  t.equal(wrong.status, 401)
  const good = await fetch(`${fake.authUrl}/token?scope=repository:a/b:pull`, {
    headers: { authorization: 'Basic ' + Buffer.from('u:p').toString('base64') },
  })
  t.equal(good.status, 200)
  t.same(
    fake.requests.map((r) => typeof r.headers.authorization === 'string' && r.headers.authorization.startsWith('Basic ')),
    [false, true, true],
  )
  t.same(
    fake.requests.map((r) => r.status),
    [401, 401, 200],
  )
})

t.test('blobs: HEAD direct, GET redirects to the CDN, CDN serves bytes and Range', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none' })
  t.teardown(() => fake.close())
  const bytes = Buffer.from('0123456789abcdefghij'.repeat(100))
  const d = fake.addBlob(bytes)
  t.equal(d, sha256(bytes))

  const head = await fetch(`${fake.url}/v2/x/y/blobs/${d}`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers.get('content-length'), String(bytes.length))
  t.equal(head.headers.get('docker-content-digest'), d)
  t.equal(head.headers.get('content-type'), 'application/octet-stream')

  const redir = await fetch(`${fake.url}/v2/x/y/blobs/${d}`, { redirect: 'manual' })
  t.equal(redir.status, 307)
  const loc = redir.headers.get('location') ?? ''
  t.match(loc, new RegExp(`^${fake.cdnUrl}/blobs/${d.slice(7)}\\?sig=\\w+$`))

  const full = await fetch(loc)
  t.equal(full.status, 200)
  t.equal(sha256(Buffer.from(await full.arrayBuffer())), d)
  const part = await fetch(loc, { headers: { range: 'bytes=10-19' } })
  t.equal(part.status, 206)
  t.equal(part.headers.get('content-range'), `bytes 10-19/${bytes.length}`)
  t.equal(Buffer.from(await part.arrayBuffer()).toString(), 'abcdefghij')
  const tail = await fetch(loc, { headers: { range: `bytes=${bytes.length - 5}-` } })
  t.equal(tail.status, 206)
  t.equal(Buffer.from(await tail.arrayBuffer()).toString(), 'fghij')
  const bad = await fetch(loc, { headers: { range: `bytes=${bytes.length}-` } })
  t.equal(bad.status, 416)
  t.equal(bad.headers.get('content-range'), `bytes */${bytes.length}`)
  t.equal((await fetch(loc.replace(/sig=\w+/, 'sig=forged'))).status, 403)

  const missing = await fetch(`${fake.url}/v2/x/y/blobs/sha256:${'0'.repeat(64)}`)
  t.equal(missing.status, 404)
  t.equal(errorCode(await missing.text()), 'BLOB_UNKNOWN')

  t.equal(fake.count({ server: 'cdn' }), 5)
  t.equal(fake.requests.filter((r) => r.server === 'cdn' && r.headers.authorization !== undefined).length, 0)
})

t.test('blobs served directly when redirectBlobs is false', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
  t.teardown(() => fake.close())
  const d = fake.addBlob(Buffer.from('hello world'))
  const res = await fetch(`${fake.url}/v2/a/blobs/${d}`, { headers: { range: 'bytes=6-' } })
  t.equal(res.status, 206)
  t.equal(res.headers.get('docker-content-digest'), d)
  t.equal(await res.text(), 'world')
})

t.test('tags/list pagination', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none' })
  t.teardown(() => fake.close())
  const d = fake.addManifest('library/redis', Buffer.from('{}'), 'application/vnd.oci.image.manifest.v1+json')
  for (const tag of ['7', '6', 'latest', 'alpine', '7-alpine']) fake.setTag('library/redis', tag, d)
  fake.deleteTag('library/redis', 'latest')
  const all = await fetch(`${fake.url}/v2/library/redis/tags/list`)
  t.same(await all.json(), { name: 'library/redis', tags: ['6', '7', '7-alpine', 'alpine'] })
  t.equal(all.headers.get('link'), null)

  const p1 = await fetch(`${fake.url}/v2/library/redis/tags/list?n=3`)
  t.same(((await p1.json()) as { tags: string[] }).tags, ['6', '7', '7-alpine'])
  const link = p1.headers.get('link') ?? ''
  t.equal(link, '</v2/library/redis/tags/list?n=3&last=7-alpine>; rel="next"')
  const next = /<([^>]+)>/.exec(link)?.[1] ?? ''
  const p2 = await fetch(`${fake.url}${next}`)
  t.same(((await p2.json()) as { tags: string[] }).tags, ['alpine'])
  t.equal(p2.headers.get('link'), null)
  t.equal((await fetch(`${fake.url}/v2/nope/tags/list`)).status, 404)
})

t.test('faults: drop, times, status, truncate, wrongBytes, extra, redirect', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
  t.teardown(() => fake.close())
  const bytes = Buffer.alloc(10_000, 7)
  const d = fake.addBlob(bytes)
  const blobUrl = `${fake.url}/v2/r/blobs/${d}`

  fake.fault({ kind: 'drop', afterBytes: 1000, match: { path: /\/blobs\// } })
  // HEAD does not use up a body fault
  t.equal((await fetch(blobUrl, { method: 'HEAD' })).status, 200)
  const dropped = await fetch(blobUrl)
  t.equal(dropped.status, 200)
  t.equal(dropped.headers.get('content-length'), '10000')
  await t.rejects(dropped.arrayBuffer(), 'body ends early')
  const resumed = await fetch(blobUrl, { headers: { range: 'bytes=1000-' } })
  t.equal(resumed.status, 206)
  await t.rejects(resumed.arrayBuffer(), 'range continuation dropped too')
  fake.clearFaults()
  t.equal(sha256(Buffer.from(await (await fetch(blobUrl)).arrayBuffer())), d)

  fake.fault({ kind: 'status', status: 429, retryAfter: '1', times: 1, match: { server: 'registry', method: 'GET' } })
  const limited = await fetch(blobUrl)
  t.equal(limited.status, 429)
  t.equal(limited.headers.get('retry-after'), '1')
  t.equal(errorCode(await limited.text()), 'TOOMANYREQUESTS')
  t.equal((await fetch(blobUrl)).status, 200, 'times: 1 disarms')
  fake.fault({ kind: 'status', status: 503, times: 1 })
  t.equal((await fetch(blobUrl)).status, 503)

  fake.fault({ kind: 'truncate', afterBytes: 10, times: 1 })
  const trunc = Buffer.from(await (await fetch(blobUrl)).arrayBuffer())
  t.equal(trunc.length, 10)
  fake.fault({ kind: 'wrongBytes', times: 1 })
  const wrong = Buffer.from(await (await fetch(blobUrl)).arrayBuffer())
  t.equal(wrong.length, bytes.length)
  t.not(sha256(wrong), d)
  fake.fault({ kind: 'extra', bytes: 5, times: 1 })
  t.equal((await (await fetch(blobUrl)).arrayBuffer()).byteLength, bytes.length + 5)

  fake.fault({ kind: 'redirect', location: 'ftp://x/y', times: 1 })
  const r = await fetch(blobUrl, { redirect: 'manual' })
  t.equal(r.status, 307)
  t.equal(r.headers.get('location'), 'ftp://x/y')
  fake.fault({ kind: 'redirectLoop', times: 1 })
  const loop = await fetch(blobUrl, { redirect: 'manual' })
  t.equal(loop.headers.get('location'), blobUrl)

  t.equal(fake.count({ server: 'registry', path: `/v2/r/blobs/${d}` }), 12)
  t.equal(fake.requests.filter((x) => x.status === 307).length, 2)
})

t.test('slow and stall bodies; close() ends them', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
  t.teardown(() => fake.close()) // idempotent; the test closes it itself below
  const d = fake.addBlob(Buffer.alloc(2000, 1))
  fake.fault({ kind: 'slow', bytesPerSecond: 20_000, times: 1 })
  const slow = Buffer.from(await (await fetch(`${fake.url}/v2/r/blobs/${d}`)).arrayBuffer())
  t.equal(sha256(slow), d)
  fake.fault({ kind: 'stall', afterBytes: 100, match: { path: /\/blobs\// } })
  const stalled = await fetch(`${fake.url}/v2/r/blobs/${d}`)
  t.equal(stalled.status, 200)
  const reading = stalled.arrayBuffer()
  fake.fault({ kind: 'delayHeaders', ms: 60_000 })
  const delayed = fetch(`${fake.url}/v2/`)
  await sleep(50)
  await fake.close()
  await t.rejects(reading, 'stalled body fails when the fake closes')
  await t.rejects(delayed, 'delayed request fails when the fake closes')
})

t.test('rate limit headers like Docker Hub', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none', rateLimit: { limit: 100, remaining: 2 } })
  t.teardown(() => fake.close())
  const img = fake.addImage('library/busybox', 'latest', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const u = `${fake.url}/v2/library/busybox/manifests/latest`
  const h = await fetch(u, { method: 'HEAD' })
  t.equal(h.headers.get('ratelimit-remaining'), '2;w=21600')
  t.equal(h.headers.get('docker-content-digest'), img.digest)
  const g1 = await fetch(u)
  t.equal(g1.headers.get('ratelimit-limit'), '100;w=21600')
  t.equal(g1.headers.get('ratelimit-remaining'), '1;w=21600')
  await fetch(u)
  const g3 = await fetch(u)
  t.equal(g3.status, 429)
  t.equal(fake.rateLimitRemaining, 0)
})
