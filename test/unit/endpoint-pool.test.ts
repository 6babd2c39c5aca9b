import t from 'tap'
import { createServer, type Server } from 'node:http'
import { Writable } from 'node:stream'
import { resolveConfig, type Config } from '../../src/config/load.js'
import { isRegmirrorError } from '../../src/errors.js'
import { createLogger } from '../../src/log.js'
import { Metrics } from '../../src/metrics.js'
import { UpstreamClient } from '../../src/upstream/client.js'
import { EndpointPool } from '../../src/upstream/pool.js'
import { freePort } from '../helpers/free-port.js'

const KiB = 1024

function config(endpoints: unknown[], extra: Record<string, unknown> = {}): Config {
  return resolveConfig({
    wellKnownUpstreams: false,
    defaultUpstream: 'pool.example',
    upstreams: [{ name: 'pool.example', endpoints }],
    ...extra,
  })
}

function pool(endpoints: unknown[], threshold = 3) {
  const changes: string[] = []
  const up = config(endpoints).upstreams[0]!
  const p = new EndpointPool(up, {
    threshold,
    coolDown: 1000,
    onEndpoint: (ep, online) => changes.push(`${ep.label} ${online ? 'up' : 'down'}`),
    onUpstream: (online) => changes.push(`upstream ${online ? 'online' : 'offline'}`),
  })
  return { p, changes, at: (i: number) => p.endpoints[i]! }
}

const labels = (eps: { label: string }[]) => eps.map((e) => new URL(e.label).hostname)

t.test('tags in trust order, the untrusted last', async (t) => {
  const { p } = pool([{ url: 'https://a.example', trusted: false }, { url: 'https://b.example' }, { url: 'https://c.example' }])
  t.same(labels(p.order('trust')), ['b.example', 'c.example', 'a.example'])
})

t.test('digests fastest first; what is not measured counts as the best, ties in trust order', async (t) => {
  const { p, at } = pool([{ url: 'https://a.example' }, { url: 'https://b.example' }, { url: 'https://c.example' }])
  t.same(labels(p.order('fastest')), ['a.example', 'b.example', 'c.example'], 'nothing measured: the configured order')
  at(0).noteLatency(0.5)
  at(1).noteLatency(0.05)
  t.same(labels(p.order('fastest')), ['b.example', 'c.example', 'a.example'], 'c is assumed as good as b, and listed after it')
  at(2).noteLatency(0.1)
  // Throughput dominates for blobs: 1 MiB at 10 MiB/s is 0.1 s, at 100 KiB/s 10 s.
  at(1).noteThroughput(512 * KiB, 5) // ~100 KiB/s
  at(2).noteThroughput(10 * 1024 * KiB, 1) // 10 MiB/s
  t.same(labels(p.order('fastest')), ['c.example', 'a.example', 'b.example'])
  at(0).noteThroughput(100, 0.001)
  t.equal(at(0).throughput, undefined, 'a short body says nothing about throughput')
})

t.test('small requests by digest try the endpoints never measured first', async (t) => {
  const { p, at } = pool([{ url: 'https://a.example' }, { url: 'https://b.example' }, { url: 'https://c.example' }])
  at(0).noteLatency(0.01)
  t.same(labels(p.order('fastest')), ['a.example', 'b.example', 'c.example'], 'a blob: the unmeasured tie with a, listed after it')
  t.same(labels(p.order('explore')), ['b.example', 'c.example', 'a.example'], 'a manifest by digest: b and c get measured')
  at(1).noteLatency(0.3)
  at(2).noteLatency(0.002)
  t.same(labels(p.order('fastest')), ['c.example', 'a.example', 'b.example'], 'then the fastest first')
  t.same(labels(p.order('explore')), ['c.example', 'a.example', 'b.example'])
})

t.test('an endpoint set aside sets no standard for the unmeasured', async (t) => {
  const { p, at } = pool([{ url: 'https://a.example' }, { url: 'https://b.example' }, { url: 'https://c.example' }])
  at(0).noteLatency(0.001)
  at(1).noteLatency(0.05)
  p.failure(at(0), 0)
  t.same(labels(p.order('fastest')), ['a.example', 'b.example', 'c.example'], 'c counts as good as b, not as the fallen a')
})

t.test('an endpoint that fails while another is up is set aside at once, then probed back', async (t) => {
  const { p, at, changes } = pool([{ url: 'https://a.example' }, { url: 'https://b.example' }])
  p.failure(at(0), 0)
  t.ok(at(0).health.offline, 'set aside at the first failure')
  t.notOk(p.offline, 'the upstream is not offline: b is up')
  t.notOk(at(0).health.admit(500).ok, 'skipped during the cool-down')
  t.ok(at(1).health.admit(500).ok, 'b is asked')
  const probe = at(0).health.admit(1000)
  t.ok(probe.ok && probe.probe !== undefined, 'after the cool-down one request probes a')
  t.notOk(at(0).health.admit(1000).ok, 'one probe at a time')
  p.success(at(0))
  t.notOk(at(0).health.offline, 'the probe brought it back')
  t.same(changes, ['https://a.example down', 'https://a.example up'])
})

t.test('the last endpoint up is held to the threshold; all down is offline with the soonest probe', async (t) => {
  const { p, at, changes } = pool([{ url: 'https://a.example' }, { url: 'https://b.example' }], 3)
  p.failure(at(0), 0)
  p.failure(at(1), 100)
  p.failure(at(1), 200)
  t.notOk(p.offline, 'b survives two failures as the last one up')
  p.failure(at(1), 300)
  t.ok(p.offline, 'the third takes the upstream offline')
  t.same(changes, ['https://a.example down', 'https://b.example down', 'upstream offline'])
  t.equal(p.retryAfterSeconds(300), 1, "a's probe is due at 1000 ms: 1 s")
  t.equal(p.retryAfterSeconds(1000), 1, 'never less than 1 s')
  const probe = at(0).health.admit(1000)
  t.ok(probe.ok)
  p.success(at(0))
  t.same(changes.at(-1), 'upstream online', 'one endpoint back brings the upstream back')
})

t.test('a broken body sets its endpoint aside only when another is up', async (t) => {
  const two = pool([{ url: 'https://a.example' }, { url: 'https://b.example' }], 3)
  two.p.bodyFailed(two.at(0))
  t.ok(two.at(0).health.offline)
  const one = pool([{ url: 'https://a.example' }], 1)
  one.p.bodyFailed(one.at(0))
  t.notOk(one.at(0).health.offline, 'the only endpoint is not blamed: resuming on it is all there is')
})

/** An HTTP server answering every request with `status` (and a digest header), counting them. */
async function server(status: number): Promise<{ url: string; count: () => number; close: () => Promise<void> }> {
  let n = 0
  const s: Server = createServer((req, res) => {
    n++
    res.writeHead(status, { 'docker-content-digest': `sha256:${'a'.repeat(64)}`, 'content-length': '0' })
    res.end()
  })
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  return { url: `http://127.0.0.1:${port}`, count: () => n, close: () => new Promise((r) => s.close(() => r())) }
}

function client(c: Config) {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(chunk.toString())
      cb()
    },
  })
  const metrics = new Metrics({ defaultMetrics: false })
  const u = new UpstreamClient(c, createLogger('info', sink), metrics)
  return { u, metrics, lines }
}

t.test('client: a tag from the untrusted endpoint only when no trusted one answers, logged and counted', async (t) => {
  const trusted = await server(503)
  const untrusted = await server(200)
  t.teardown(() => Promise.all([trusted.close(), untrusted.close()]))
  const c = config([{ url: untrusted.url, trusted: false }, { url: trusted.url }], { retries: { attempts: 1 } })
  const { u, metrics, lines } = client(c)
  t.teardown(() => u.close())
  const up = c.upstreams[0]!
  const res = await u.request(up, { method: 'HEAD', path: '/v2/x/manifests/latest', repo: 'x' })
  await res.body.dump()
  t.equal(res.status, 200)
  t.equal(res.endpoint?.label, untrusted.url)
  t.equal(trusted.count(), 1, 'the trusted endpoint was asked first')
  const counted = (await metrics.untrustedAnswers.get()).values
  t.same(
    counted.map((v) => [v.labels.endpoint, v.value]),
    [[untrusted.url, 1]],
  )
  t.ok(
    lines.some((l) => l.includes('untrusted endpoint')),
    'logged',
  )
  // A digest is verified: any endpoint may give it, and it is no untrusted answer.
  const byDigest = await u.request(up, { method: 'HEAD', path: `/v2/x/blobs/sha256:${'a'.repeat(64)}`, repo: 'x', byDigest: 'small' })
  await byDigest.body.dump()
  t.equal((await metrics.untrustedAnswers.get()).values[0]?.value, 1, 'not counted again')
})

t.test('client: a 404 from one endpoint lets the next answer', async (t) => {
  const missing = await server(404)
  const has = await server(200)
  t.teardown(() => Promise.all([missing.close(), has.close()]))
  const c = config([{ url: missing.url }, { url: has.url }])
  const { u } = client(c)
  t.teardown(() => u.close())
  const res = await u.request(c.upstreams[0]!, { method: 'HEAD', path: '/v2/x/manifests/v1', repo: 'x' })
  await res.body.dump()
  t.equal(res.status, 200)
  t.equal(missing.count(), 1)
  const both = config([{ url: missing.url }, { url: missing.url + '/v2' }])
  const { u: u2 } = client(both)
  t.teardown(() => u2.close())
  const none = await u2.request(both.upstreams[0]!, { method: 'HEAD', path: '/v2/x/manifests/v1', repo: 'x' })
  await none.body.dump()
  t.equal(none.status, 404, 'when every endpoint says 404, that is the answer')
})

t.test('client: every endpoint down is UPSTREAM_OFFLINE with a Retry-After, nothing dialled', async (t) => {
  const c = config([{ url: `http://127.0.0.1:${await freePort()}` }, { url: `http://127.0.0.1:${await freePort()}` }], {
    retries: { attempts: 1 },
    offline: { failureThreshold: 1, coolDown: '60s' },
  })
  const { u, metrics } = client(c)
  t.teardown(() => u.close())
  const up = c.upstreams[0]!
  const first = await u.request(up, { method: 'GET', path: '/v2/x/manifests/v1', repo: 'x' }).catch((e: unknown) => e)
  t.ok(isRegmirrorError(first, 'UPSTREAM_ERROR'), 'the first request finds both closed')
  const second = await u.request(up, { method: 'GET', path: '/v2/x/manifests/v1', repo: 'x' }).catch((e: unknown) => e)
  t.ok(isRegmirrorError(second, 'UPSTREAM_OFFLINE'))
  const retryAfter = Number((second as { retryAfter?: string }).retryAfter)
  t.ok(retryAfter >= 59 && retryAfter <= 60, `Retry-After ${retryAfter}`)
  const sent = (await metrics.endpointRequests.get()).values.reduce((n, v) => n + v.value, 0)
  t.equal(sent, 2, 'each endpoint was tried once, then no more')
  t.equal((await metrics.upstreamOnline.get()).values[0]?.value, 0, 'regmirror_upstream_online is 0')
})
