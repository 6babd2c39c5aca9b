// Per-upstream limits (issue #14): maxConcurrent requests in flight (a blob download until its last byte), a start
// rate (maxRequestsPerSecond), a queue that is served in order and gives up after maxQueueWait with TOOMANYREQUESTS,
// and maxMbps over the blob bodies of the upstream, all downloads together.
import { createHash } from 'node:crypto'
import t from 'tap'
import { startFakeRegistry, type RecordedRequest } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_IMAGE_MANIFESTS, errorCode } from '../helpers/oci-http.js'
import { sleep } from '../helpers/sleep.js'
import { sha256 } from '../helpers/fake-registry/index.js'

const MiB = 1024 * 1024

const blobGets = (requests: RecordedRequest[]) =>
  requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/') && r.status === 200)

t.test('maxConcurrent: one request in flight at a time, a blob download holding its turn until its last byte', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
  t.teardown(() => fake.close())
  const img = fake.addImage('library/app', '1', {
    platforms: [{ os: 'linux', architecture: 'amd64' }],
    layerSizes: [64 * 1024, 64 * 1024, 64 * 1024],
  })
  // Each body trickles for about a quarter of a second.
  fake.fault({ kind: 'slow', bytesPerSecond: 256 * 1024, match: { server: 'registry', path: /\/blobs\// } })
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, maxConcurrent: 1 }] })
  const layers = img.manifests[0]!.layers
  const answers = await Promise.all(layers.map((l) => get(`${mirror.url}/v2/app/blobs/${l.digest}`)))
  for (const [i, r] of answers.entries()) {
    t.equal(r.status, 200)
    t.equal(sha256(r.body), layers[i]!.digest)
  }
  const gets = blobGets(fake.requests).sort((a, b) => a.at - b.at)
  t.equal(gets.length, 3)
  for (let i = 1; i < gets.length; i++) {
    t.ok(gets[i]!.at >= gets[i - 1]!.doneAt!, `download ${i + 1} started only after download ${i} sent its last byte`)
  }
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_upstream_queue_wait_seconds_count\{upstream="docker.io",outcome="admitted"\} [3-9]/)
  t.match(metrics, /regmirror_upstream_queue_length\{upstream="docker.io"\} 0/)
})

t.test('maxQueueWait: a request without a turn gives up with TOOMANYREQUESTS and Retry-After; a cached tag is served stale', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
  t.teardown(() => fake.close())
  const img = fake.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [64 * 1024] })
  fake.addImage('library/other', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100] })
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: fake.url, maxConcurrent: 1, maxQueueWait: '300ms' }],
    tagTtl: '50ms',
    timeouts: { bodyIdle: '20s' },
    retries: { attempts: 1 },
  })
  t.equal((await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_IMAGE_MANIFESTS })).status, 200)
  // A download that stalls holds the only turn.
  fake.fault({ kind: 'stall', afterBytes: 10, match: { server: 'registry', path: /\/blobs\// } })
  const stalled = new AbortController()
  const holding = fetch(`${mirror.url}/v2/app/blobs/${img.manifests[0]!.layers[0]!.digest}`, { signal: stalled.signal }).catch(() => {})
  t.teardown(() => stalled.abort())
  while (blobGets(fake.requests).length === 0) await sleep(10)

  const miss = await get(`${mirror.url}/v2/other/manifests/1`, { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(miss.status, 429)
  t.equal(errorCode(miss.body), 'TOOMANYREQUESTS')
  t.equal(miss.headers.get('retry-after'), '1')
  t.equal(fake.count({ server: 'registry', path: '/v2/library/other/manifests/1' }), 0, 'never sent')

  await sleep(80)
  const stale = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(stale.status, 200, 'the cached tag instead of waiting')
  t.equal(stale.headers.get('x-regmirror-cache'), 'stale')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_upstream_queue_wait_seconds_count\{upstream="docker.io",outcome="timeout"\} 2/)
  t.ok(mirror.logs.some((l) => l.includes('no turn to ask the upstream within maxQueueWait')))
  stalled.abort()
  await holding
})

t.test('maxRequestsPerSecond: requests start no faster than the rate, in the order they came', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none' })
  t.teardown(() => fake.close())
  const tags = Array.from({ length: 11 }, (_, i) => String(i))
  for (const tag of tags) fake.addImage('library/app', tag, { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10] })
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, maxRequestsPerSecond: 10 }] })
  const answers = await Promise.all(tags.map((tag) => get(`${mirror.url}/v2/app/manifests/${tag}`, { accept: ACCEPT_IMAGE_MANIFESTS })))
  for (const r of answers) t.equal(r.status, 200)
  const starts = fake.requests.filter((r) => r.server === 'registry' && r.path.includes('/manifests/')).map((r) => r.at)
  t.equal(starts.length, 11)
  const span = Math.max(...starts) - Math.min(...starts)
  // 11 starts at 10 a second are at least a second apart from first to last; a little less for clock jitter.
  t.ok(span >= 900, `11 requests spread over ${span} ms`)
})

t.test('maxMbps holds within 10% over a 200 MiB pull, two downloads sharing the limit', { timeout: 180_000 }, async (t) => {
  const fake = await startFakeRegistry({ auth: 'none' })
  t.teardown(() => fake.close())
  const img = fake.addImage('library/big', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100 * MiB, 100 * MiB] })
  // Well below what this setup moves unthrottled (200 Mbit/s on a busy 2-core machine, 66 when very busy).
  const maxMbps = 50
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, maxMbps }], timeouts: { bodyIdle: '60s' } })
  const layers = img.manifests[0]!.layers
  const started = process.hrtime.bigint()
  // Streamed and hashed as they come: the client must not be what slows the pull down.
  const received = await Promise.all(
    layers.map(async (l) => {
      const res = await fetch(`${mirror.url}/v2/big/blobs/${l.digest}`)
      const h = createHash('sha256')
      let n = 0
      for await (const chunk of res.body!) {
        h.update(chunk)
        n += chunk.length
      }
      return { status: res.status, digest: `sha256:${h.digest('hex')}`, n }
    }),
  )
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  let bytes = 0
  for (const [i, r] of received.entries()) {
    t.equal(r.status, 200)
    t.equal(r.digest, layers[i]!.digest)
    bytes += r.n
  }
  t.equal(bytes, 200 * MiB)
  const mbps = (bytes * 8) / 1e6 / seconds
  t.comment(`200 MiB in ${seconds.toFixed(2)} s: ${mbps.toFixed(1)} Mbit/s against a limit of ${maxMbps}`)
  t.ok(mbps <= maxMbps * 1.1, `at most 10% over the limit (${mbps.toFixed(1)} Mbit/s)`)
  // The bound the issue demands is the upper one. Below, a pace that stalls would show; a busy test machine (other
  // test files in parallel) may fall short of the limit, so the lower bound is loose.
  t.ok(mbps >= maxMbps * 0.5, `at least half the limit (${mbps.toFixed(1)} Mbit/s)`)
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  const throttled = Number(/regmirror_upstream_throttled_bytes_total\{upstream="docker.io"\} (\d+)/.exec(metrics)?.[1] ?? 0)
  t.ok(throttled > 50 * MiB, 'bytes waited for the limit')
})
