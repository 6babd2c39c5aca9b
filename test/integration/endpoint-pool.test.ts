/**
 * Endpoint pools through the real app against fake registries with Docker Hub style token auth: each endpoint's
 * credentials go to its own realm only, a failing endpoint hands over to the next within the request, and when
 * every endpoint is down the cache answers what it can and the rest is 503 with Retry-After.
 */
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_IMAGE_MANIFESTS } from '../helpers/oci-http.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [300_000] }

t.test('each endpoint with its own credentials and realm; failover within a request; all down is cache only', async (t) => {
  const a = await startFakeRegistry({ credentials: { username: 'alice', password: 'a-secret' } })
  const b = await startFakeRegistry({ credentials: { username: 'bob', password: 'b-secret' } })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  for (const fake of [a, b]) for (const tag of ['one', 'two', 'three']) fake.addImage('team/app', tag, ONE)
  const mirror = await startMirror(t, {
    upstreams: [
      {
        name: 'registry.example',
        endpoints: [
          // On the registry's own host, a realm on another port gets credentials only when listed (docs: Token realms).
          { url: a.url, credentials: { username: 'alice', password: 'a-secret' }, realms: [new URL(a.authUrl).host] },
          { url: b.url, credentials: { username: 'bob', password: 'b-secret' }, realms: [new URL(b.authUrl).host] },
        ],
      },
    ],
    defaultUpstream: 'registry.example',
    tagTtl: '10ms',
    retries: { attempts: 1 },
    offline: { failureThreshold: 2, coolDown: '60s' },
  })
  const tagUrl = (tag: string) => `${mirror.url}/v2/team/app/manifests/${tag}`

  const first = await get(tagUrl('one'), { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(first.status, 200)
  t.equal(sha256(first.body), first.headers.get('docker-content-digest'))
  t.ok(a.count({ server: 'auth' }) > 0, 'the most trusted endpoint answered, with a token from its realm')
  t.equal(b.count({}), 0, 'the second endpoint was not asked')

  // a fails: the same request goes on to b, whose realm gets b's credentials (a's would be refused there).
  a.fault({ kind: 'status', status: 503, match: { server: 'registry' } })
  const second = await get(tagUrl('two'), { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(second.status, 200, 'answered by the next endpoint')
  t.equal(sha256(second.body), second.headers.get('docker-content-digest'))
  t.ok(b.count({ server: 'auth' }) > 0, "b's realm issued the token")
  const layer = JSON.parse(second.body.toString()).layers[0].digest as string
  const blob = await get(`${mirror.url}/v2/team/app/blobs/${layer}`)
  t.equal(blob.status, 200)
  t.equal(sha256(blob.body), layer, 'the blob, verified, from the endpoint up')
  t.equal(a.requests.filter((r) => r.server === 'registry' && r.status === 503).length, 1, 'a failed once, then was skipped')
  t.match(mirror.logs.find((l) => l.includes('endpoint set aside')) ?? '', a.url, 'the log names the endpoint set aside')

  // b fails too: it is the last one up, held to failureThreshold (2); then the upstream is offline.
  b.fault({ kind: 'status', status: 503, match: { server: 'registry' } })
  await new Promise((r) => setTimeout(r, 20))
  for (const tag of ['one', 'two']) {
    const r = await get(tagUrl(tag), { accept: ACCEPT_IMAGE_MANIFESTS })
    t.equal(r.headers.get('x-regmirror-cache'), 'stale', `${tag}: the cached tag is served`)
  }
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_upstream_online\{upstream="registry.example"\} 0/, 'offline when every endpoint is down')
  const miss = await get(tagUrl('three'), { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(miss.status, 503, 'what is not cached fails at once')
  const retryAfter = Number(miss.headers.get('retry-after'))
  t.ok(retryAfter > 50 && retryAfter <= 60, `Retry-After is the soonest probe (${retryAfter} s)`)
  const logs = mirror.logs.join('\n')
  t.notMatch(logs, /a-secret|b-secret/, 'no credential in any log line')
})
