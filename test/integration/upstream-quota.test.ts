// Docker Hub's pull quota (issue #14): the mirror reads `ratelimit-remaining` per credential, stops revalidating
// cached tags below `quotaReserve` so the pulls left go to what it does not hold, and spreads pulls over several
// accounts by the quota each has left. The fake registry counts down as Docker Hub does (a manifest GET costs one,
// a HEAD nothing) and answers 429 at zero.
import t from 'tap'
import { startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_IMAGE_MANIFESTS } from '../helpers/oci-http.js'
import { sleep } from '../helpers/sleep.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100] }

const pull = (base: string, repo: string, ref = '1') => get(`${base}/v2/${repo}/manifests/${ref}`, { accept: ACCEPT_IMAGE_MANIFESTS })

/** Requests for a repository's manifests that reached the registry (401 challenges left out). */
function asked(fake: FakeRegistry, repo: string, method: string): number {
  return fake.requests.filter(
    (r) => r.server === 'registry' && r.method === method && r.path.startsWith(`/v2/${repo}/manifests/`) && r.status !== 401,
  ).length
}

t.test('below quotaReserve cached tags are served without revalidation, while misses still go upstream', async (t) => {
  const fake = await startFakeRegistry({ rateLimit: { limit: 100, remaining: 12 } })
  t.teardown(() => fake.close())
  const imgs = Object.fromEntries(['a', 'b', 'c', 'd'].map((r) => [r, fake.addImage(`library/${r}`, '1', ONE)]))
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, quotaReserve: 10 }], tagTtl: '50ms' })

  t.equal((await pull(mirror.url, 'a')).status, 200)
  t.equal(fake.rateLimitRemaining, 11)
  await sleep(80)
  fake.reset()
  const above = await pull(mirror.url, 'a')
  t.equal(above.status, 200)
  t.equal(asked(fake, 'library/a', 'HEAD'), 1, 'at 11 left (reserve 10) a stale tag is revalidated')

  t.equal((await pull(mirror.url, 'b')).status, 200)
  t.equal((await pull(mirror.url, 'c')).status, 200)
  t.equal(fake.rateLimitRemaining, 9, 'now below the reserve')
  await sleep(80)
  fake.reset()
  for (let i = 0; i < 3; i++) {
    const r = await pull(mirror.url, 'a')
    t.equal(r.status, 200)
    t.equal(r.headers.get('docker-content-digest'), imgs.a!.digest)
    t.equal(r.headers.get('x-regmirror-cache'), 'stale', 'served from the cache, past its TTL')
  }
  t.equal(asked(fake, 'library/a', 'HEAD') + asked(fake, 'library/a', 'GET'), 0, 'not revalidated')

  const miss = await pull(mirror.url, 'd')
  t.equal(miss.status, 200, 'a tag never seen still goes upstream')
  t.equal(asked(fake, 'library/d', 'GET'), 1)
  const byDigest = await get(`${mirror.url}/v2/b/manifests/${imgs.b!.digest}`, { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(byDigest.status, 200, 'a cached manifest by digest is served')
  t.equal(fake.rateLimitRemaining, 8)

  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_tag_revalidations_skipped_total\{upstream="docker.io"\} 3/)
  t.match(metrics, /regmirror_upstream_quota_remaining\{upstream="docker.io",credential="anonymous"\} 8/)
  const lines = mirror.logs.filter((l) => l.includes('pull quota below quotaReserve'))
  t.equal(lines.length, 1, 'logged once for the tag, not once per pull')
  t.match(lines[0], /"repository":"library\/a"/)
})

t.test('the count holds for its window (w=), and quotaMaxStale bounds how old a tag is served unrevalidated', async (t) => {
  const fake = await startFakeRegistry({ rateLimit: { limit: 100, remaining: 5, window: 1 } })
  t.teardown(() => fake.close())
  fake.addImage('library/a', '1', ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: fake.url, quotaReserve: 10, quotaMaxStale: '10m' }],
    tagTtl: '50ms',
  })
  t.equal((await pull(mirror.url, 'a')).status, 200)
  await sleep(80)
  fake.reset()
  t.equal((await pull(mirror.url, 'a')).headers.get('x-regmirror-cache'), 'stale')
  t.equal(asked(fake, 'library/a', 'HEAD'), 0, 'within the window: not revalidated')
  await sleep(1100)
  t.equal((await pull(mirror.url, 'a')).headers.get('x-regmirror-cache'), 'hit')
  t.equal(asked(fake, 'library/a', 'HEAD'), 1, 'the window passed: the count is unknown again, and the tag is revalidated')

  const old = await startFakeRegistry({ rateLimit: { limit: 100, remaining: 5 } })
  t.teardown(() => old.close())
  old.addImage('library/a', '1', ONE)
  const strict = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: old.url, quotaReserve: 10, quotaMaxStale: '150ms' }],
    tagTtl: '50ms',
  })
  t.equal((await pull(strict.url, 'a')).status, 200)
  await sleep(200)
  old.reset()
  t.equal((await pull(strict.url, 'a')).status, 200)
  t.equal(asked(old, 'library/a', 'HEAD'), 1, 'older than quotaMaxStale: revalidated even below the reserve')
})

t.test('quotaReserve 0 disables it', async (t) => {
  const fake = await startFakeRegistry({ rateLimit: { limit: 100, remaining: 1 } })
  t.teardown(() => fake.close())
  fake.addImage('library/a', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, quotaReserve: 0 }], tagTtl: '50ms' })
  t.equal((await pull(mirror.url, 'a')).status, 200)
  await sleep(80)
  fake.reset()
  t.equal((await pull(mirror.url, 'a')).status, 200)
  t.equal(asked(fake, 'library/a', 'HEAD'), 1)
})

const ACCOUNTS = [
  { username: 'alice', password: 'alice-pass' },
  { username: 'bob', password: 'bob-pass' },
]

/** The user name of the HTTP Basic credentials a token request carried. */
function tokenUser(h: string | string[] | undefined): string | undefined {
  const m = /^Basic (\S+)$/.exec(typeof h === 'string' ? h : '')
  return m?.[1] ? Buffer.from(m[1], 'base64').toString().split(':')[0] : undefined
}

t.test('several credentials are used in turn by the quota each has left, each with its own tokens', async (t) => {
  const fake = await startFakeRegistry({ users: ACCOUNTS, rateLimit: { limit: 100, remaining: 0, perUser: { alice: 20, bob: 10 } } })
  t.teardown(() => fake.close())
  for (let i = 1; i <= 16; i++) fake.addImage('library/app', String(i), ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: fake.url, credentials: ACCOUNTS, private: false, realms: [new URL(fake.authUrl).host] }],
  })
  for (let i = 1; i <= 16; i++) t.equal((await pull(mirror.url, 'app', String(i))).status, 200, `tag ${i}`)
  const alice = fake.remainingOf('alice')!
  const bob = fake.remainingOf('bob')!
  t.equal(alice + bob, 30 - 16, 'every pull cost one account one')
  t.ok(Math.abs(alice - bob) <= 1, `the account with more left was used first, until both are even (alice ${alice}, bob ${bob})`)
  t.ok(bob < 10, 'both accounts were used')
  const tokenRequests = fake.requests.filter((r) => r.server === 'auth')
  t.same(tokenRequests.map((r) => tokenUser(r.headers.authorization)).sort(), ['alice', 'bob'], 'one token per account, then cached')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, new RegExp(`regmirror_upstream_quota_remaining\\{upstream="docker.io",credential="alice"\\} ${alice}`))
  t.match(metrics, new RegExp(`regmirror_upstream_quota_remaining\\{upstream="docker.io",credential="bob"\\} ${bob}`))
  t.notOk(
    mirror.logs.some((l) => l.includes('alice-pass') || l.includes('bob-pass')),
    'no password in the log',
  )
})

t.test('an account whose quota is spent (429) is replaced by one with quota at once', async (t) => {
  const fake = await startFakeRegistry({ users: ACCOUNTS, rateLimit: { limit: 100, remaining: 0, perUser: { alice: 0, bob: 5 } } })
  t.teardown(() => fake.close())
  fake.addImage('library/app', '1', ONE)
  fake.addImage('library/app', '2', ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: fake.url, credentials: ACCOUNTS, private: false, realms: [new URL(fake.authUrl).host] }],
  })
  t.equal((await pull(mirror.url, 'app', '1')).status, 200, 'the 429 with alice was not the answer: bob asked again')
  t.equal((await pull(mirror.url, 'app', '2')).status, 200)
  t.equal(fake.remainingOf('bob'), 3)
  t.equal(fake.count({ server: 'registry', method: 'GET', path: '/v2/library/app/manifests/2' }), 1, 'the next pull went to bob directly')
})
