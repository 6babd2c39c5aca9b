import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import type { Test } from 'tap'
import t from 'tap'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_ALL_MANIFESTS as ACCEPT, errorCode } from '../helpers/oci-http.js'
import { startSearchIndex } from '../helpers/search-index.js'

/** `docker search` (`/v1/search`) and `/v2/_catalog` through the mirror (issue #15), at the HTTP level; e2e tests use real clients. */

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [1000] }
const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` })

interface Results {
  num_results: number
  num_pages: number
  page: number
  page_size: number
  results: Record<string, unknown>[]
}
const results = (b: Buffer) => JSON.parse(b.toString()) as Results
const names = (b: Buffer) => results(b).results.map((r) => r.name)
const catalog = (b: Buffer) => (JSON.parse(b.toString()) as { repositories: string[] }).repositories

/** A mirror in front of two fake registries, holding tags of `docker.io` and `ghcr.io` repositories. */
async function setup(t: Test, extra: Record<string, unknown> = {}, upstreamExtra: Record<string, unknown> = {}) {
  const hub = await startFakeRegistry()
  const ghcr = await startFakeRegistry({ auth: 'none' })
  t.teardown(() => Promise.all([hub.close(), ghcr.close()]))
  for (const r of ['library/nginx', 'library/alpine', 'bitnami/nginx', 'team-a/secret']) hub.addImage(r, '1', ONE)
  for (const r of ['owner/nginx-app', 'owner/tool']) ghcr.addImage(r, '1', ONE)
  const index = await startSearchIndex([
    { name: 'nginx', description: 'Official build of Nginx.', stars: 20000, official: true },
    { name: 'bitnami/nginx', description: 'Bitnami nginx', stars: 200 },
    { name: 'team-a/secret-nginx', description: 'private' },
  ])
  t.teardown(() => index.close())
  const mirror = await startMirror(t, {
    upstreams: [
      { name: 'docker.io', url: hub.url, ...upstreamExtra },
      { name: 'ghcr.io', url: ghcr.url },
    ],
    search: { upstream: index.url },
    retries: { attempts: 1 },
    ...extra,
  })
  return { hub, ghcr, index, mirror }
}

async function pull(base: string, names: string[], headers: Record<string, string> = {}): Promise<void> {
  for (const n of names) {
    const r = await get(`${base}/v2/${n}/manifests/1`, { accept: ACCEPT, ...headers })
    if (r.status !== 200) throw new Error(`pull ${n}: ${r.status} ${r.body.toString()}`)
  }
}

t.test('/v1/search: forwarded to the index, kept for search.cacheTtl, and answered from the cache when the index is gone', async (t) => {
  const { index, mirror } = await setup(t)
  const ping = await get(`${mirror.url}/v1/_ping`)
  t.equal(ping.status, 200, "the daemon's ping")
  t.equal(ping.headers.get('x-docker-registry-standalone'), 'true')

  const first = await get(`${mirror.url}/v1/search?q=nginx&n=25`)
  t.equal(first.status, 200)
  t.equal(first.headers.get('x-regmirror-search'), 'upstream')
  t.same(names(first.body), ['nginx', 'bitnami/nginx', 'team-a/secret-nginx'], "the index's results, in its order")
  const r0 = results(first.body).results[0]!
  t.same(r0, { name: 'nginx', description: 'Official build of Nginx.', star_count: 20000, is_official: true, is_automated: false })
  t.notMatch(first.body.toString(), /secret-cookie/, 'fields docker search does not read are not passed on')
  t.equal(results(first.body).num_results, 3)

  const again = await get(`${mirror.url}/v1/search?q=nginx&n=25`)
  t.equal(again.headers.get('x-regmirror-search'), 'cache')
  t.same(names(again.body), names(first.body))
  t.same(index.searches, ['nginx'], 'the index was asked once')

  await pull(mirror.url, ['nginx', 'alpine', 'bitnami/nginx', 'ghcr.io/owner/nginx-app', 'ghcr.io/owner/tool'])
  await index.close()
  const local = await get(`${mirror.url}/v1/search?q=nginx&n=10`)
  t.equal(local.status, 200, 'the index is down: still an answer')
  t.equal(local.headers.get('x-regmirror-search'), 'local')
  t.same(names(local.body), ['bitnami/nginx', 'ghcr.io/owner/nginx-app', 'nginx'], 'the cached repositories whose names contain the term')
  for (const r of results(local.body).results) t.equal(r.description, 'cached in this mirror', `${String(r.name)} is marked local`)
  t.same(
    results(local.body).results.map((r) => r.is_official),
    [false, false, true],
    'a Docker Hub official image is official',
  )
  const paged = await get(`${mirror.url}/v1/search?q=nginx&n=2&page=2`)
  t.same(names(paged.body), ['nginx'])
  t.match(results(paged.body), { num_results: 3, num_pages: 2, page: 2, page_size: 2 })
  t.same(names((await get(`${mirror.url}/v1/search?q=nothing-like-it`)).body), [])
  t.same(names((await get(`${mirror.url}/v1/search?q=library/alp`)).body), ['alpine'], 'the full name matches too')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_listing_answers_total\{kind="search",source="local"\} [1-9]/)
})

t.test('/v1/search: an index that answers garbage, an error or an endless body is answered locally, in bounded time', async (t) => {
  const { index, mirror } = await setup(t)
  await pull(mirror.url, ['nginx'])
  for (const mode of ['garbage', 'error', 'endless'] as const) {
    index.mode = mode
    const started = Date.now()
    const r = await get(`${mirror.url}/v1/search?q=ngin${mode}`.slice(0, -mode.length))
    t.equal(r.status, 200, mode)
    t.equal(r.headers.get('x-regmirror-search'), 'local', `${mode}: local results`)
    t.same(names(r.body), ['nginx'])
    t.ok(Date.now() - started < 20_000, `${mode}: answered (${Date.now() - started} ms)`)
  }
  t.ok(
    mirror.logs.some((l) => l.includes('search index failed') && l.includes('search:127.0.0.1')),
    'the failure is logged under the index name',
  )
})

t.test('/v1/search and /v2/_catalog: hostile and odd queries', async (t) => {
  const { index, mirror } = await setup(t)
  await pull(mirror.url, ['nginx', 'alpine', 'ghcr.io/owner/tool'])
  const long = await get(`${mirror.url}/v1/search?q=${'a'.repeat(300)}`)
  t.equal(long.status, 400, 'a very long term')
  t.equal(errorCode(long.body), 'NAME_INVALID')
  t.equal((await get(`${mirror.url}/v1/search?q=a%01b`)).status, 400, 'a control character')
  t.equal((await get(`${mirror.url}/v1/search?q=nginx&n=lots`)).status, 400, 'n that is no number')
  t.equal(errorCode((await get(`${mirror.url}/v1/search?q=nginx&n=-1`)).body), 'PAGINATION_NUMBER_INVALID')
  const huge = await get(`${mirror.url}/v1/search?q=nginx&n=99999999999999999999&page=0`)
  t.equal(huge.status, 200, 'a huge n is clamped')
  t.match(results(huge.body), { page_size: 100, page: 1 }, 'to 100 (moby’s limit), page 0 to 1')
  t.equal(index.searches.length, 1, 'the refused ones never reached the index')
  t.equal((await get(`${mirror.url}/v1/search?q=x`, {}, 'POST')).status, 405, 'read-only')

  const all = catalog((await get(`${mirror.url}/v2/_catalog`)).body)
  t.same(all, ['ghcr.io/owner/tool', 'library/alpine', 'library/nginx'])
  t.same(catalog((await get(`${mirror.url}/v2/_catalog?n=99999999999999999999`)).body), all, 'a huge n is clamped')
  const zero = await get(`${mirror.url}/v2/_catalog?n=0`)
  t.same(catalog(zero.body), [], 'n=0: an empty page')
  t.equal(zero.headers.get('link'), null)
  for (const n of ['-1', 'abc', '1e3', '0x10']) {
    const r = await get(`${mirror.url}/v2/_catalog?n=${n}`)
    t.equal(r.status, 400, `n=${n}`)
    t.equal(errorCode(r.body), 'PAGINATION_NUMBER_INVALID')
  }
  t.same(catalog((await get(`${mirror.url}/v2/_catalog?last=zzz`)).body), [], 'last after everything')
  t.same(catalog((await get(`${mirror.url}/v2/_catalog?last=%00%FF%E2%98%83`)).body), all, 'last of odd bytes: compared, nothing more')
  t.same(catalog((await get(`${mirror.url}/v2/_catalog?last=library/alpine`)).body), ['library/nginx'], 'last excludes itself')
  t.equal((await get(`${mirror.url}/v2/_catalog?last=${'a'.repeat(2000)}`)).status, 400, 'a last longer than any name')
  t.equal((await get(`${mirror.url}/v2/_catalog`, {}, 'DELETE')).status, 405)
  const unknown = await get(`${mirror.url}/v2/_catalog?ns=evil.example.com`)
  t.equal(unknown.status, 404, 'a registry not configured')
  t.equal(errorCode(unknown.body), 'NAME_UNKNOWN')
})

t.test('/v2/_catalog: repositories of every upstream, paginated with n/last and Link; ?ns= for one upstream', async (t) => {
  const { mirror } = await setup(t, {}, { deny: ['team-a/**'] })
  await pull(mirror.url, ['nginx', 'alpine', 'bitnami/nginx', 'ghcr.io/owner/nginx-app', 'ghcr.io/owner/tool'])
  const all = await get(`${mirror.url}/v2/_catalog`)
  t.equal(all.status, 200)
  t.equal(all.headers.get('content-type'), 'application/json')
  const expected = ['bitnami/nginx', 'ghcr.io/owner/nginx-app', 'ghcr.io/owner/tool', 'library/alpine', 'library/nginx']
  t.same(catalog(all.body), expected, 'sorted; the default upstream without a prefix, ghcr.io with it')
  t.equal(all.headers.get('link'), null, 'one page')

  let next: string | null = '/v2/_catalog?n=2'
  const pages: string[][] = []
  while (next !== null && pages.length < 10) {
    const r = await get(`${mirror.url}${next}`)
    t.equal(r.status, 200)
    pages.push(catalog(r.body))
    const link = r.headers.get('link')
    next = link === null ? null : (/^<([^>]+)>; rel="next"$/.exec(link)?.[1] ?? 'bad link')
  }
  t.same(pages, [expected.slice(0, 2), expected.slice(2, 4), expected.slice(4)], 'pages of 2, following Link')
  const exact = await get(`${mirror.url}/v2/_catalog?n=5`)
  t.same(catalog(exact.body), expected)
  t.equal(exact.headers.get('link'), null, 'no Link when the page holds the rest')

  const ghcr = await get(`${mirror.url}/v2/_catalog?ns=ghcr.io&n=1`)
  t.same(catalog(ghcr.body), ['owner/nginx-app'], 'one upstream, without its prefix')
  t.equal(ghcr.headers.get('link'), '</v2/_catalog?last=owner%2Fnginx-app&n=1&ns=ghcr.io>; rel="next"', 'the Link keeps ns')
  const hub = catalog((await get(`${mirror.url}/v2/_catalog?ns=docker.io`)).body)
  t.same(hub, ['bitnami/nginx', 'library/alpine', 'library/nginx'])
})

t.test('search and catalog need credentials when auth is on, and show only what the client may pull', async (t) => {
  const file = join(t.testdir({}), 'htpasswd')
  const users = { alice: 'alice-s3cret', bob: 'bob-s3cret' }
  await writeFile(
    file,
    Object.entries(users)
      .map(([u, p]) => `${u}:${bcrypt.hashSync(p, 4)}`)
      .join('\n') + '\n',
  )
  const { mirror } = await setup(t, {
    auth: { htpasswd: file, rules: [{ repositories: ['docker.io/team-a/**', 'ghcr.io/**'], users: ['alice'] }] },
  })
  const alice = basic('alice', users.alice)
  const bob = basic('bob', users.bob)
  await pull(mirror.url, ['nginx', 'team-a/secret', 'ghcr.io/owner/tool'], alice)
  t.equal((await get(`${mirror.url}/v1/_ping`)).status, 200, 'the ping needs nothing')
  for (const path of ['/v1/search?q=nginx', '/v2/_catalog']) {
    const r = await get(`${mirror.url}${path}`)
    t.equal(r.status, 401, `${path} without credentials`)
    t.equal(r.headers.get('www-authenticate'), 'Basic realm="regmirror"')
    t.equal((await get(`${mirror.url}${path}`, basic('alice', 'wrong'))).status, 401, `${path} with a wrong password`)
  }
  t.same(catalog((await get(`${mirror.url}/v2/_catalog`, alice)).body), ['ghcr.io/owner/tool', 'library/nginx', 'team-a/secret'])
  t.same(catalog((await get(`${mirror.url}/v2/_catalog`, bob)).body), ['library/nginx'], 'bob is not shown what he may not pull')
  t.same(names((await get(`${mirror.url}/v1/search?q=nginx`, bob)).body), ['nginx', 'bitnami/nginx'], "nor the index's team-a result")
  t.same(names((await get(`${mirror.url}/v1/search?q=nginx`, alice)).body), ['nginx', 'bitnami/nginx', 'team-a/secret-nginx'])
})

t.test('search.enabled: false answers /v1/ with 404; the catalog stays', async (t) => {
  const { index, mirror } = await setup(t, {}, {})
  await mirror.close()
  const off = await startMirror(t, { upstreams: [{ name: 'docker.io', url: index.url }], search: { enabled: false, upstream: index.url } })
  t.equal((await get(`${off.url}/v1/_ping`)).status, 404)
  t.equal((await get(`${off.url}/v1/search?q=nginx`)).status, 404)
  t.equal(index.searches.length, 0)
  t.equal((await get(`${off.url}/v2/_catalog`)).status, 200)
})
