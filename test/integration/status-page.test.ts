import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import type { Test } from 'tap'
import t from 'tap'
import { startFakeRegistry, type FakeImage } from '../helpers/fake-registry/index.js'
import { startGatedUpstream } from '../helpers/gated-upstream.js'
import { get, pausedGet, startMirror, type TestMirror } from '../helpers/mirror.js'
import { ACCEPT_ALL_MANIFESTS as ACCEPT, errorCode } from '../helpers/oci-http.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { PEER_HEADER, signPeerRequest } from '../../src/cluster/peer-auth.js'
import type { StatusSnapshot } from '../../src/status/report.js'

// Two platforms, so a tag names an index and the pull's size comes from the child a client picks.
const ONE = { layerSizes: [3000, 5000] }
const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` })

async function status(m: TestMirror, headers: Record<string, string> = {}): Promise<StatusSnapshot> {
  const r = await get(`${m.url}/api/status`, headers)
  if (r.status !== 200) throw new Error(`/api/status answered ${r.status}`)
  return JSON.parse(r.body.toString()) as StatusSnapshot
}

/** A pull as a client does it: the tag (an index), the linux/amd64 manifest, its blobs. */
async function pull(t: Test, base: string, name: string, tag: string, headers: Record<string, string> = {}) {
  const idx = await get(`${base}/v2/${name}/manifests/${tag}`, { accept: ACCEPT, ...headers })
  t.equal(idx.status, 200, `${name}:${tag} resolves`)
  const doc = JSON.parse(idx.body.toString()) as { manifests: { digest: string; platform: { architecture: string } }[] }
  const amd64 = doc.manifests.find((m) => m.platform.architecture === 'amd64')
  const man = await get(`${base}/v2/${name}/manifests/${amd64?.digest}`, { accept: ACCEPT, ...headers })
  const mdoc = JSON.parse(man.body.toString()) as { config: { digest: string }; layers: { digest: string }[] }
  for (const b of [mdoc.config, ...mdoc.layers]) t.equal((await get(`${base}/v2/${name}/blobs/${b.digest}`, headers)).status, 200)
}

/** Config and layers of the image's linux/amd64 manifest. */
function imageBytes(img: FakeImage): number {
  const m = img.manifests.find((x) => x.platform?.architecture === 'amd64')
  const doc = JSON.parse(m?.body.toString() ?? '{}') as { config: { size: number }; layers: { size: number }[] }
  return [doc.config, ...doc.layers].reduce((n, d) => n + d.size, 0)
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`timed out waiting for ${what}`)
}

t.test('/api/status: recent pulls, most pulled, hit ratio, bytes served from cache vs fetched, pins, rate limit', async (t) => {
  const hub = await startFakeRegistry({ rateLimit: { limit: 100, remaining: 100 } })
  t.teardown(() => hub.close())
  const alpine = hub.addImage('library/alpine', '3.20', ONE)
  const alpineOld = hub.addImage('library/alpine', '3.19', ONE)
  hub.addImage('library/nginx', '1.27', ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url }],
    cache: { pins: ['docker.io/library/nginx:1.27'] },
  })
  const before = await status(mirror)
  t.equal(before.cache.hitRatio, null, 'no ratio before the first request')
  t.same(before.recentPulls, [])
  t.match(before, { state: 'ready', version: /^\d+\.\d+\.\d+/, upstreams: [{ name: 'docker.io', online: true, lastError: null }] })

  await pull(t, mirror.url, 'alpine', '3.20')
  const cold = await status(mirror)
  t.equal(cold.cache.hits, 0)
  t.equal(cold.cache.servedFromCacheBytes, 0, 'a cold pull is all fetched')
  t.ok(cold.cache.fetchedBytes >= imageBytes(alpine))
  t.equal(cold.cache.savedBytes, 0, 'nothing saved yet')
  t.match(cold.recentPulls[0], {
    upstream: 'docker.io',
    repository: 'library/alpine',
    tag: '3.20',
    digest: alpine.digest,
    size: imageBytes(alpine),
    platform: 'linux/amd64',
  })
  t.ok(Date.now() - Date.parse(cold.recentPulls[0]?.at ?? '') < 60_000, 'when: just now')

  await pull(t, mirror.url, 'alpine', '3.19')
  await pull(t, mirror.url, 'nginx', '1.27')
  // Again within half a minute: the same pull for the list, but every blob now comes from the cache.
  await pull(t, mirror.url, 'alpine', '3.20')
  const warm = await status(mirror)
  const blobs = 3 // config and two layers
  // The repeated pull: its tag (fresh), its manifest by digest and its blobs are hits; the three cold pulls missed each.
  t.equal(warm.cache.hits, blobs + 2)
  t.equal(warm.cache.misses, 3 * (blobs + 2))
  t.equal(warm.cache.hitRatio, (blobs + 2) / (4 * (blobs + 2)))
  t.ok(warm.cache.servedFromCacheBytes >= imageBytes(alpine), 'the repeated layers came from the cache')
  const c = warm.cache
  t.equal(c.savedBytes, c.servedFromCacheBytes + c.servedFromUpstreamBytes - c.fetchedBytes, 'saved: served minus fetched')
  t.ok(c.savedBytes > imageBytes(alpine) / 2, 'most of the repeated image was saved (tokens and manifests were fetched)')
  t.same(
    warm.recentPulls.map((p) => `${p.repository}:${p.tag}`),
    ['library/nginx:1.27', 'library/alpine:3.19', 'library/alpine:3.20'],
  )
  t.equal(warm.recentPulls[1]?.digest, alpineOld.digest)
  t.same(
    warm.topRepositories.map((r) => [r.repository, r.pulls]),
    [
      ['library/alpine', 2],
      ['library/nginx', 1],
    ],
  )
  t.match(warm.pins, [{ ref: 'docker.io/library/nginx:1.27', origin: 'config', root: /^sha256:/ }])
  t.ok((warm.pins[0]?.cached ?? 0) >= 3, 'the pinned image is cached')
  t.equal(warm.cache.entries, mirror.app.services.index.count)
  t.equal(warm.cache.usedBytes, mirror.app.services.index.size)
  t.equal(warm.cache.maxBytes, mirror.app.services.index.maxSize)
  t.equal(warm.upstreams[0]?.ratelimitRemaining, 100 - 6, "Docker Hub's ratelimit-remaining after six manifest GETs (two per cold pull)")
})

t.test('a download in progress: size, bytes received, clients attached; gone once done', async (t) => {
  const bytes = Buffer.alloc(512 * 1024, 7)
  const up = await startGatedUpstream(bytes)
  t.teardown(() => up.stop())
  const mirror = await startMirror(t, { upstreams: [{ name: 'up.example', url: up.url }], defaultUpstream: 'up.example' })
  const url = `${mirror.url}/v2/team/app/blobs/${sha256(bytes)}`
  const first = await pausedGet(url)
  await up.waiting()
  const second = get(url)
  await waitFor(async () => (await status(mirror)).downloads[0]?.clients === 2, 'two clients on the download')
  const s = await status(mirror)
  t.equal(s.downloads.length, 1)
  t.match(s.downloads[0], { digest: sha256(bytes), upstream: 'up.example', repository: 'team/app', size: bytes.length, clients: 2 })
  t.ok((s.downloads[0]?.received ?? 0) >= up.half && (s.downloads[0]?.received ?? 0) < bytes.length, 'about half received')
  t.type(s.downloads[0]?.bytesPerSecond, 'number')
  const page = (await get(`${mirror.url}/`)).body.toString()
  t.match(page, `<progress max="${bytes.length}" value="${s.downloads[0]?.received}"></progress>`, 'the page draws the progress bar')
  up.open()
  t.equal(sha256((await first.body()).subarray(0)), sha256(bytes))
  t.equal(sha256((await second).body), sha256(bytes))
  await waitFor(async () => (await status(mirror)).downloads.length === 0, 'the download to finish')
})

t.test('an upstream that fails: offline, with its last error (our message, no upstream body) and when', async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  hub.addImage('library/alpine', '3.20', ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url }],
    offline: { failureThreshold: 1, coolDown: '1h' },
    retries: { attempts: 1 },
  })
  hub.fault({ kind: 'reply', status: 500, body: 'secret-upstream-body', match: { server: 'registry' } })
  t.equal((await get(`${mirror.url}/v2/alpine/manifests/3.20`, { accept: ACCEPT })).status, 502)
  const s = await status(mirror)
  t.match(s.upstreams[0], {
    name: 'docker.io',
    online: false,
    lastError: { code: 'UPSTREAM_ERROR', message: 'upstream docker.io answered 500' },
  })
  t.ok(Date.now() - Date.parse(s.upstreams[0]?.lastError?.at ?? '') < 60_000)
  const page = (await get(`${mirror.url}/`)).body.toString()
  t.match(page, '<span class="off">offline</span>')
  t.notMatch(page, 'secret-upstream-body')
})

t.test("a download that breaks off is the upstream's last error too", async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], retries: { resumeAttempts: 0 } })
  const blob = Buffer.alloc(256 * 1024, 1)
  const digest = hub.addBlob(blob)
  hub.fault({ kind: 'drop', afterBytes: 1000, match: { server: 'cdn' } })
  const r = await get(`${mirror.url}/v2/team/app/blobs/${digest}`).catch((err: unknown) => err as Error)
  t.ok(r instanceof Error || r.status !== 200 || sha256(r.body) !== digest, 'the client does not get the blob')
  await waitFor(async () => (await status(mirror)).upstreams[0]?.lastError !== null, 'the failure to be noted')
  const s = await status(mirror)
  t.match(s.upstreams[0]?.lastError, { code: /^UPSTREAM_/, message: String })
  t.notMatch(JSON.stringify(s), /127\.0\.0\.1:\d+\/[^"]*\?/, 'no signed CDN address')
  t.same(s.downloads, [], 'the failed download is not shown as in progress')
})

t.test('escaping: a hostile media type from an upstream shows as text, never as markup', async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }] })
  const hostile = '<img src=x onerror=alert(1)>'
  const body = JSON.stringify({ schemaVersion: 2, mediaType: hostile, manifests: [] })
  hub.fault({ kind: 'reply', status: 200, headers: { 'content-type': 'application/json' }, body, match: { server: 'registry' } })
  t.equal((await get(`${mirror.url}/v2/evil/manifests/1`, { accept: ACCEPT })).status, 502)
  const s = await status(mirror)
  t.match(s.upstreams[0]?.lastError, { code: 'UPSTREAM_MANIFEST_INVALID', message: /<img src=x onerror=alert\(1\)>/ })
  const page = await get(`${mirror.url}/`)
  t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  t.match(page.headers.get('content-security-policy'), /^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-/)
  t.equal(page.headers.get('x-content-type-options'), 'nosniff')
  t.notMatch(page.body.toString(), '<img')
  t.match(page.body.toString(), '&lt;img src=x onerror=alert(1)&gt;')
})

t.test('escaping: a hostile repository name is refused at the door, and escaped if one ever got past it', async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }] })
  const hostile = '"><script>alert(1)</script>'
  const r = await get(`${mirror.url}/v2/${encodeURIComponent(hostile)}/manifests/latest`, { accept: ACCEPT })
  t.equal(r.status, 400, 'the name grammar refuses it')
  t.same((await status(mirror)).recentPulls, [], 'nothing recorded')
  // Past the router (a future path, an imported archive's name): the page still shows it as text.
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }))
  mirror.app.services.activity.manifestServed('docker.io', `team/${hostile}`, `<b>${hostile}`, {
    digest: `sha256:${'a'.repeat(64)}`,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    body,
  })
  const page = (await get(`${mirror.url}/`)).body.toString()
  t.notMatch(page, '<script>alert')
  t.notMatch(page, '<b>')
  t.match(page, 'docker.io/team/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;:&lt;b&gt;&quot;&gt;&lt;script&gt;')
  t.equal((page.match(/<script>/g) ?? []).length, 1, "the page's own script only")
  const json = JSON.parse((await get(`${mirror.url}/api/status`)).body.toString()) as StatusSnapshot
  t.equal(json.recentPulls[0]?.repository, `team/${hostile}`, 'the JSON carries the text as it is: JSON escaping is the client’s')
})

t.test('ui.enabled: false answers 404 on / and /api/status; /v2/ is unchanged', async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], ui: { enabled: false } })
  for (const path of ['/', '/api/status']) {
    const r = await get(`${mirror.url}${path}`)
    t.equal(r.status, 404, path)
    t.equal(errorCode(r.body), 'NAME_UNKNOWN')
  }
  const v2 = await get(`${mirror.url}/v2/`)
  t.equal(v2.status, 200)
  t.equal(v2.body.toString(), '{}')
  const secret = 'a-cluster-secret-of-some-length'
  const on = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], cluster: { secret } })
  const peerPath = '/_regmirror/peer/api/status'
  const viaPeer = await get(`${on.url}${peerPath}`, { [PEER_HEADER]: signPeerRequest(secret, peerPath) })
  t.equal(viaPeer.status, 404, "a replica's signed peer path does not reach the page")
  t.equal((await get(`${on.url}/`, {}, 'POST')).status, 405, 'the page is read-only')
  t.equal((await get(`${on.url}/`, {}, 'HEAD')).status, 200)
  t.equal((await get(`${on.url}/v2/`)).body.toString(), '{}', '/v2/ is the registry base with the page on too')
})

t.test('with auth.htpasswd: 401 without credentials, and only the repositories the user may pull', async (t) => {
  const creds = { username: 'mirror-user', password: 'upstream-pa55word' }
  const hub = await startFakeRegistry({ credentials: creds })
  t.teardown(() => hub.close())
  hub.addImage('library/alpine', '3.20', ONE)
  hub.addImage('team-a/app', '1', ONE)
  const file = join(t.testdir({}), 'htpasswd')
  const passwords = { alice: 'alice-s3cret', bob: 'bob-s3cret' }
  await writeFile(
    file,
    Object.entries(passwords)
      .map(([u, p]) => `${u}:${bcrypt.hashSync(p, 4)}\n`)
      .join(''),
  )
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url, credentials: creds, realms: [new URL(hub.authUrl).host] }],
    auth: { htpasswd: file, rules: [{ repositories: ['docker.io/team-a/**'], users: ['alice'] }] },
  })
  for (const path of ['/', '/api/status']) {
    const r = await get(`${mirror.url}${path}`)
    t.equal(r.status, 401, `${path} without credentials`)
    t.equal(r.headers.get('www-authenticate'), 'Basic realm="regmirror"', 'the browser asks for them')
    t.equal((await get(`${mirror.url}${path}`, basic('alice', 'wrong'))).status, 401)
  }
  await pull(t, mirror.url, 'alpine', '3.20', basic('alice', passwords.alice))
  await pull(t, mirror.url, 'team-a/app', '1', basic('alice', passwords.alice))
  const alice = await status(mirror, basic('alice', passwords.alice))
  t.same(alice.recentPulls.map((p) => p.repository).sort(), ['library/alpine', 'team-a/app'])
  const bob = await status(mirror, basic('bob', passwords.bob))
  t.same(
    bob.recentPulls.map((p) => p.repository),
    ['library/alpine'],
    'bob may not pull team-a/app, so he does not see it',
  )
  const page = (await get(`${mirror.url}/`, basic('bob', passwords.bob))).body.toString()
  t.notMatch(page, 'team-a')
  const everything = JSON.stringify(alice) + page
  for (const secret of ['upstream-pa55word', 'mirror-user', ...Object.values(passwords), 'Bearer']) {
    t.notMatch(everything, secret, 'no credential or token on the page')
  }
})
