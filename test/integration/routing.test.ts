import t from 'tap'
import type { Test } from 'tap'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, rawRequest, startMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_OCI_MANIFESTS, errorCode } from '../helpers/oci-http.js'

async function fake(t: Test, opts: Parameters<typeof startFakeRegistry>[0] = {}): Promise<FakeRegistry> {
  const f = await startFakeRegistry(opts)
  t.teardown(() => f.close())
  return f
}

t.test('four conventions reach the right upstream and nothing crosses between them', async (t) => {
  const hub = await fake(t)
  const ghcr = await fake(t)
  // The same repository name on both registries, with different content.
  const onHub = hub.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  const onGhcr = ghcr.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  t.not(onHub.digest, onGhcr.digest)
  // tagTtl 0: every tag list goes upstream (none is answered from memory), so where it went can be counted.
  const mirror = await startMirror(t, {
    tagTtl: '0',
    upstreams: [
      { name: 'docker.io', url: hub.url },
      { name: 'ghcr.io', url: ghcr.url, hosts: ['ghcr.mirror.test'] },
    ],
  })
  const port = new URL(mirror.url).port
  const conventions: [string, string, Record<string, string>, FakeRegistry, typeof onHub][] = [
    ['registry-mirrors (no registry named)', '/v2/app/manifests/1', {}, hub, onHub],
    ['containerd ?ns=ghcr.io', '/v2/library/app/manifests/1?ns=ghcr.io', {}, ghcr, onGhcr],
    ['containerd ?ns=docker.io', '/v2/library/app/manifests/1?ns=docker.io', {}, hub, onHub],
    ['path prefix', '/v2/ghcr.io/library/app/manifests/1', {}, ghcr, onGhcr],
    ['Host header', '/v2/library/app/manifests/1', { host: `ghcr.mirror.test:${port}` }, ghcr, onGhcr],
    ['unmapped Host falls back to the default', '/v2/library/app/manifests/1', { host: `other.test:${port}` }, hub, onHub],
  ]
  let downloads = 0
  for (const [what, path, headers, upstream, image] of conventions) {
    downloads += hub.count({ server: 'cdn', method: 'GET' }) + ghcr.count({ server: 'cdn', method: 'GET' })
    hub.reset()
    ghcr.reset()
    const r = await rawRequest(mirror.url, path, { accept: ACCEPT_OCI_MANIFESTS, ...headers })
    t.equal(r.status, 200, what)
    t.equal(r.headers['docker-content-digest'], image.digest, `${what}: the right image`)
    t.equal(sha256(r.body), image.digest, `${what}: verified`)
    // Blobs and the tag list of the image, through the same convention.
    for (const blob of image.blobs) {
      const b = await rawRequest(mirror.url, path.replace(/manifests\/1/, `blobs/${blob.digest}`), headers)
      t.equal(b.status, 200, `${what}: blob`)
      t.equal(sha256(b.body), blob.digest, `${what}: blob verified`)
    }
    const tags = await rawRequest(mirror.url, path.replace(/manifests\/1/, 'tags/list'), headers)
    t.equal(tags.status, 200, `${what}: tags/list`)
    t.equal(upstream.count({ server: 'registry', path: '/v2/library/app/tags/list' }), 1, `${what}: tags/list from the right upstream`)
    const other = upstream === hub ? ghcr : hub
    t.equal(other.count({}), 0, `${what}: the other upstream was not asked anything`)
  }
  downloads += hub.count({ server: 'cdn', method: 'GET' }) + ghcr.count({ server: 'cdn', method: 'GET' })
  // Three conventions reach each upstream; every blob was still downloaded once.
  t.equal(downloads, onHub.blobs.length + onGhcr.blobs.length, 'each blob downloaded once whatever the convention')
})

t.test('containerd override_path mirrors: /v2/<registry>/...?ns=<registry> is that registry, prefix removed', async (t) => {
  const hub = await fake(t)
  const ghcr = await fake(t)
  const platforms = [{ os: 'linux', architecture: 'amd64' }]
  const onHub = hub.addImage('library/app', '1', { platforms })
  const onGhcr = ghcr.addImage('owner/app', '1', { platforms })
  for (const tag of ['2', '3']) ghcr.addImage('owner/app', tag, { platforms, layerSizes: [10] })
  const mirror = await startMirror(t, {
    upstreams: [
      { name: 'docker.io', url: hub.url },
      { name: 'ghcr.io', url: ghcr.url },
    ],
  })
  // What containerd sends for [host."http://mirror/v2/<registry>"] with override_path = true.
  // The second is the first's repository (library/ added), already cached: nothing goes upstream for it.
  const cases = [
    ['/v2/docker.io/library/app', 'docker.io', hub, ghcr, onHub, '/v2/library/app', true],
    ['/v2/docker.io/app', 'docker.io', hub, ghcr, onHub, '/v2/library/app', false],
    ['/v2/ghcr.io/owner/app', 'ghcr.io', ghcr, hub, onGhcr, '/v2/owner/app', true],
  ] as const
  for (const [base, ns, upstream, other, image, upstreamPath, miss] of cases) {
    upstream.reset()
    other.reset()
    const m = await rawRequest(mirror.url, `${base}/manifests/1?ns=${ns}`, { accept: ACCEPT_OCI_MANIFESTS })
    t.equal(m.status, 200, `${base}?ns=${ns}`)
    t.equal(m.headers['docker-content-digest'], image.digest, `${base}: the upstream's own image`)
    t.equal(sha256(m.body), image.digest)
    for (const blob of image.blobs) {
      const b = await rawRequest(mirror.url, `${base}/blobs/${blob.digest}?ns=${ns}`)
      t.equal(b.status, 200)
      t.equal(sha256(b.body), blob.digest, `${base}: blob verified`)
    }
    if (miss) t.ok(upstream.count({ server: 'registry', path: `${upstreamPath}/manifests/1` }) >= 1, `${base}: asked as ${upstreamPath}`)
    else t.equal(upstream.count({}), 0, `${base}: served from the cache of ${upstreamPath}`)
    t.equal(upstream.count({ path: new RegExp(`/v2/${ns.replace('.', '\\.')}/`) }), 0, `${base}: the prefix never reaches upstream`)
    t.equal(other.count({}), 0, `${base}: the other upstream was not asked anything`)
  }
  // Paging a tag list keeps the client's own path, prefix and ns included, so it comes back the same way.
  const page = await rawRequest(mirror.url, '/v2/ghcr.io/owner/app/tags/list?ns=ghcr.io&n=1')
  t.equal(page.status, 200)
  t.same(JSON.parse(page.body.toString()), { name: 'owner/app', tags: ['1'] })
  const next = /^<([^>]+)>/.exec(String(page.headers.link))?.[1]
  t.match(next, /^\/v2\/ghcr\.io\/owner\/app\/tags\/list\?/)
  t.equal(new URL(next!, 'http://x').searchParams.get('ns'), 'ghcr.io')
  const page2 = await rawRequest(mirror.url, next!)
  t.same(JSON.parse(page2.body.toString()), { name: 'owner/app', tags: ['2'] })
  // Another registry's name in front is not a prefix: it stays part of the repository, which that upstream lacks.
  hub.reset()
  const crossed = await rawRequest(mirror.url, '/v2/ghcr.io/owner/app/manifests/1?ns=docker.io', { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(crossed.status, 404)
  t.equal(errorCode(crossed.body), 'MANIFEST_UNKNOWN')
  t.ok(hub.count({ server: 'registry', path: '/v2/ghcr.io/owner/app/manifests/1' }) >= 1, 'asked of docker.io as ghcr.io/owner/app')
})

t.test('an unconfigured registry is refused by every convention, and never contacted', async (t) => {
  const hub = await fake(t)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }] })
  for (const path of [
    '/v2/library/app/manifests/1?ns=evil.example',
    '/v2/library/app/manifests/1?ns=127.0.0.1:1',
    '/v2/evil.example/app/manifests/1',
    '/v2/localhost/app/manifests/1',
    '/v2/ghcr.io/app/manifests/1',
  ]) {
    const r = await rawRequest(mirror.url, path, { accept: ACCEPT_OCI_MANIFESTS })
    t.equal(r.status, 404, path)
    t.equal(errorCode(r.body), 'NAME_UNKNOWN', path)
    t.match(r.body.toString(), /not configured/, path)
  }
  t.equal(hub.count({}), 0, 'the default upstream was not used for them either')
})

t.test('a live registry that is not configured is never contacted, whatever the request names', async (t) => {
  const hub = await fake(t)
  hub.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const stray = await fake(t, { auth: 'none' })
  stray.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const strayHost = new URL(stray.url).host
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }] })
  for (const path of [
    `/v2/library/app/manifests/1?ns=${strayHost}`,
    `/v2/${strayHost}/library/app/manifests/1`,
    `/v2/${strayHost}/library/app/tags/list`,
  ]) {
    const r = await rawRequest(mirror.url, path, { accept: ACCEPT_OCI_MANIFESTS })
    t.equal(r.status, 404, path)
    t.equal(errorCode(r.body), 'NAME_UNKNOWN', path)
  }
  // A Host header is only ever looked up in the configured hosts: lists; anything else is the default upstream.
  const byHost = await rawRequest(mirror.url, '/v2/library/app/manifests/1', { accept: ACCEPT_OCI_MANIFESTS, host: strayHost })
  t.equal(byHost.status, 200)
  t.ok(hub.count({ server: 'registry', path: '/v2/library/app/manifests/1' }) >= 1, 'the unmapped Host went to the default upstream')
  t.equal(stray.count({}), 0, 'the unconfigured registry received nothing')
})

t.test('blobs are shared across upstreams by digest; tags are not', async (t) => {
  const hub = await fake(t)
  const ghcr = await fake(t)
  const onHub = hub.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [1000] })
  const layer = onHub.blobs.find((b) => b.size === 1000)!
  ghcr.addBlob(layer.bytes)
  const mirror = await startMirror(t, {
    upstreams: [
      { name: 'docker.io', url: hub.url },
      { name: 'ghcr.io', url: ghcr.url },
    ],
  })
  t.equal(sha256((await get(`${mirror.url}/v2/library/app/blobs/${layer.digest}`)).body), layer.digest)
  const viaGhcr = await get(`${mirror.url}/v2/ghcr.io/library/app/blobs/${layer.digest}`)
  t.equal(viaGhcr.status, 200)
  t.equal(sha256(viaGhcr.body), layer.digest)
  t.equal(ghcr.count({}), 0, 'the same digest through another upstream is a cache hit')
  // The tag docker.io/library/app:1 is cached; ghcr.io has no such tag and must say so.
  t.equal((await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })).status, 200)
  const tag = await get(`${mirror.url}/v2/ghcr.io/library/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(tag.status, 404)
  t.equal(errorCode(tag.body), 'MANIFEST_UNKNOWN')
  t.ok(ghcr.count({ server: 'registry', path: '/v2/library/app/manifests/1' }) >= 1, 'ghcr.io was asked for its own tag')
})

t.test('allow and deny lists', async (t) => {
  const hub = await fake(t)
  hub.addImage('myorg/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  hub.addImage('other/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  hub.addImage('myorg/secret', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url, allow: ['myorg/**'], deny: ['myorg/secret'] }] })
  t.equal((await get(`${mirror.url}/v2/myorg/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })).status, 200)
  const denied = hub.addImage('myorg/secret', '2', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  for (const repo of ['other/app', 'myorg/secret']) {
    for (const path of [
      `/v2/${repo}/manifests/1`,
      `/v2/${repo}/manifests/1?ns=docker.io`,
      `/v2/docker.io/${repo}/manifests/1`,
      `/v2/${repo}/tags/list`,
      `/v2/${repo}/blobs/${denied.blobs[0]!.digest}`,
    ]) {
      const r = await get(`${mirror.url}${path}`, { accept: ACCEPT_OCI_MANIFESTS })
      t.equal(r.status, 403, path)
      t.equal(errorCode(r.body), 'DENIED', path)
    }
  }
  t.equal(hub.count({ path: /other|secret/ }), 0, 'denied repositories are never requested upstream')
})

t.test('credentials go to the upstream realm only, and never into logs or responses', async (t) => {
  const creds = { username: 'robot', password: 's3cr3t-pa55word' }
  const hub = await fake(t, { credentials: creds })
  const img = hub.addImage('private/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  // The fake's realm is another port of the upstream's host: credentials go there only when it is listed.
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url, credentials: creds, realms: [new URL(hub.authUrl).host] }],
  })
  const r = await get(`${mirror.url}/v2/private/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(r.status, 200)
  t.equal(r.headers.get('docker-content-digest'), img.digest)
  const tokenReqs = hub.requests.filter((q) => q.server === 'auth')
  t.ok(tokenReqs.length >= 1)
  const basic = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
  t.ok(
    tokenReqs.every((q) => q.headers.authorization === basic),
    'the token realm got the configured credentials',
  )
  const layer = img.blobs[img.blobs.length - 1]!
  const b = await get(`${mirror.url}/v2/private/app/blobs/${layer.digest}`)
  t.equal(sha256(b.body), layer.digest)
  t.equal(hub.requests.filter((q) => q.server === 'cdn' && q.headers.authorization).length, 0, 'no credentials to the CDN')
  // Nothing secret anywhere a client or an operator's log pipeline can see.
  const seen = [mirror.logs.join('\n'), JSON.stringify([...r.headers]), r.body.toString(), JSON.stringify([...b.headers])].join('\n')
  t.notMatch(seen, creds.password)
  t.notMatch(seen, Buffer.from(`${creds.username}:${creds.password}`).toString('base64'))
  const tokens = hub.requests
    .filter((q) => q.server === 'registry' && typeof q.headers.authorization === 'string')
    .map((q) => String(q.headers.authorization).replace(/^Bearer /, ''))
  t.ok(tokens.length > 0)
  for (const tok of new Set(tokens)) t.notMatch(seen, tok, 'no upstream token in logs or responses')
})

t.test('a realm on another domain gets no credentials unless listed in realms', async (t) => {
  const creds = { username: 'robot', password: 'another-s3cret' }
  // The hostile realm: a second fake's auth server, named by a different host.
  const hostile = await fake(t)
  const realm = `${hostile.authUrl.replace('127.0.0.1', 'localhost')}/token`
  const hub = await fake(t, { realm })
  hub.addImage('private/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  const denied = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url, credentials: creds }] })
  const r = await get(`${denied.url}/v2/private/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(r.status, 502)
  t.equal(hostile.count({ server: 'auth' }), 0, 'the foreign realm was never contacted')
  t.ok(
    denied.logs.some((l) => l.includes('token realm not allowed')),
    'the refusal is logged',
  )
  t.notMatch(denied.logs.join('\n'), creds.password)

  const allowed = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url, credentials: creds, realms: ['localhost'] }] })
  await get(`${allowed.url}/v2/private/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  const got = hostile.requests.filter((q) => q.server === 'auth')
  t.ok(got.length >= 1, 'an explicitly allowed realm is used')
  t.match(String(got[0]?.headers.authorization), /^Basic /)
})

t.test('tag TTL rules: first matching rule, by tag, semver or repo:tag, else the upstream tagTtl', async (t) => {
  const hub = await fake(t)
  // Expected: whether the tag is revalidated upstream once 50ms have passed.
  const tags: [string, boolean][] = [
    ['latest', true], // rule `latest`: 50ms
    ['1.2.3', false], // rule `semver`: 1h
    ['2.0.0-rc1', false], // matches `semver` first, although `*-rc*` would match too
    ['nightly-rc1', true], // rule `library/ttl:*-rc*`: 50ms
    ['edge', false], // no rule: tagTtl 1h
  ]
  for (const [tag] of tags) hub.addImage('library/ttl', tag, { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const mirror = await startMirror(t, {
    upstreams: [
      {
        name: 'docker.io',
        url: hub.url,
        tagTtl: '1h',
        tagTtlRules: [
          { pattern: 'latest', ttl: '50ms' },
          { pattern: 'semver', ttl: '1h' },
          { pattern: 'library/ttl:*-rc*', ttl: '50ms' },
        ],
      },
    ],
  })
  for (const [tag] of tags) t.equal((await get(`${mirror.url}/v2/ttl/manifests/${tag}`, { accept: ACCEPT_OCI_MANIFESTS })).status, 200, tag)
  await sleep(120)
  hub.reset()
  for (const [tag] of tags) await get(`${mirror.url}/v2/ttl/manifests/${tag}`, { accept: ACCEPT_OCI_MANIFESTS })
  for (const [tag, revalidated] of tags) {
    t.equal(
      hub.count({ server: 'registry', path: `/v2/library/ttl/manifests/${tag}` }),
      revalidated ? 1 : 0,
      `${tag}: ${revalidated ? 'revalidated' : 'still fresh'}`,
    )
  }
})

t.test('a token got with one upstream credentials is never sent to another upstream', async (t) => {
  const creds = { username: 'robot', password: 'per-upstream-s3cret' }
  const good = await fake(t, { credentials: creds })
  good.addImage('private/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  // Another configured upstream that names the same token realm (allowed: same host) and asks for the same scope.
  const other = await fake(t, { realm: `${good.authUrl}/token` })
  other.addImage('private/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const mirror = await startMirror(t, {
    upstreams: [
      { name: 'docker.io', url: good.url, credentials: creds, realms: [new URL(good.authUrl).host] },
      { name: 'other.example', url: other.url },
    ],
  })
  t.equal((await get(`${mirror.url}/v2/private/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })).status, 200)
  const goodTokens = new Set(
    good.requests.filter((q) => q.server === 'registry' && q.headers.authorization).map((q) => String(q.headers.authorization)),
  )
  t.ok(goodTokens.size >= 1)
  good.reset()
  const r = await get(`${mirror.url}/v2/private/app/manifests/1?ns=other.example`, { accept: ACCEPT_OCI_MANIFESTS })
  t.not(r.status, 200, 'the other upstream does not get in on the first one credentials')
  const sentToOther = other.requests.map((q) => q.headers.authorization).filter((a) => a !== undefined)
  t.same(
    sentToOther.filter((a) => goodTokens.has(String(a))),
    [],
    'no token of the first upstream reached the other',
  )
  t.ok(
    good.requests.filter((q) => q.server === 'auth').every((q) => q.headers.authorization === undefined),
    'the realm was asked without credentials',
  )
})

t.test('refused credentials: the client gets UNAUTHORIZED, and the secret appears nowhere', async (t) => {
  const hub = await fake(t, { credentials: { username: 'robot', password: 'the-right-one' } })
  hub.addImage('private/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const wrong = 'a-wrong-pa55word'
  const mirror = await startMirror(t, {
    upstreams: [
      { name: 'docker.io', url: hub.url, credentials: { username: 'robot', password: wrong }, realms: [new URL(hub.authUrl).host] },
    ],
  })
  const r = await get(`${mirror.url}/v2/private/app/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(r.status, 401)
  t.equal(errorCode(r.body), 'UNAUTHORIZED')
  t.equal(hub.count({ server: 'registry', path: '/v2/private/app/manifests/1' }), 1, 'no retry loop against the registry')
  const encoded = Buffer.from(`robot:${wrong}`).toString('base64')
  const seen = [mirror.logs.join('\n'), JSON.stringify([...r.headers]), r.body.toString()].join('\n')
  t.notMatch(seen, wrong)
  t.notMatch(seen, encoded)
})
