import type { Test } from 'tap'
import t from 'tap'
import { sha256, startFakeRegistry, type Fault } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_IMAGE_MANIFESTS, errorCode } from '../helpers/oci-http.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100] }

async function cachedTag(t: Test) {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/app', '1', ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: fake.url }],
    tagTtl: '50ms',
    timeouts: { headers: '300ms' },
    retries: { attempts: 1 },
    offline: { failureThreshold: 100 },
  })
  const url = `${mirror.url}/v2/app/manifests/1`
  const first = await get(url, { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(first.status, 200)
  await sleep(80)
  return { fake, img, mirror, url }
}

const failures: [string, (f: Awaited<ReturnType<typeof cachedTag>>['fake']) => Promise<void> | void][] = [
  ['upstream times out', (f) => f.fault({ kind: 'delayHeaders', ms: 3000, match: { server: 'registry' } } as Fault)],
  ['upstream refuses connections', (f) => f.close()],
  ['upstream answers 500', (f) => f.fault({ kind: 'status', status: 500, match: { server: 'registry' } })],
  ['upstream answers 503', (f) => f.fault({ kind: 'status', status: 503, match: { server: 'registry' } })],
  ['upstream answers 429', (f) => f.fault({ kind: 'status', status: 429, retryAfter: '30', match: { server: 'registry' } })],
]

for (const [name, fail] of failures) {
  t.test(`stale-if-error: a cached tag is served when the ${name}`, async (t) => {
    const { fake, img, mirror, url } = await cachedTag(t)
    await fail(fake)
    const r = await get(url, { accept: ACCEPT_IMAGE_MANIFESTS })
    t.equal(r.status, 200)
    t.equal(r.headers.get('x-regmirror-cache'), 'stale')
    t.match(r.headers.get('warning') ?? '', /^110 /)
    t.equal(r.headers.get('docker-content-digest'), img.digest)
    t.equal(sha256(r.body), img.digest)
    const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
    t.match(metrics, /regmirror_stale_served_total\{upstream="docker.io"\} 1/)
    t.ok(
      mirror.logs.some((l) => l.includes('stale-if-error')),
      'logged',
    )
  })
}

t.test('a 429 with nothing cached reaches the client as TOOMANYREQUESTS with the upstream Retry-After', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  fake.addImage('library/rl', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], retries: { attempts: 1 } })
  fake.fault({ kind: 'status', status: 429, retryAfter: '120', match: { server: 'registry', path: /manifests/ } })
  const r = await get(`${mirror.url}/v2/rl/manifests/1`, { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(r.status, 429)
  t.equal(r.headers.get('retry-after'), '120')
  t.equal(errorCode(r.body), 'TOOMANYREQUESTS')
  t.equal(r.headers.get('x-regmirror-cache'), null)
})

// serveStaleOn (issue #14, goharbor/harbor#22106): an image deleted or made private upstream keeps serving from the
// cache when the operator lists the status; without it, the upstream's answer reaches the client.
const refusals: [number, string, (f: Awaited<ReturnType<typeof cachedTag>>['fake']) => void][] = [
  [401, 'UNAUTHORIZED', (f) => f.fault({ kind: 'status', status: 401, match: { server: 'registry', path: /manifests/ } })],
  [403, 'DENIED', (f) => f.fault({ kind: 'status', status: 403, match: { server: 'registry', path: /manifests/ } })],
  [404, 'MANIFEST_UNKNOWN', (f) => f.deleteTag('library/app', '1')],
]

async function cachedTagWith(t: Test, serveStaleOn: number[]) {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/app', '1', ONE)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: fake.url, serveStaleOn, negativeTtl: 0 }],
    tagTtl: '50ms',
    retries: { attempts: 1 },
  })
  const url = `${mirror.url}/v2/app/manifests/1`
  t.equal((await get(url, { accept: ACCEPT_IMAGE_MANIFESTS })).status, 200)
  await sleep(80)
  return { fake, img, mirror, url }
}

for (const [status, code, refuse] of refusals) {
  t.test(`serveStaleOn: [${status}]: a cached tag is served when revalidation gets ${status}`, async (t) => {
    const { fake, img, mirror, url } = await cachedTagWith(t, [status])
    refuse(fake)
    for (let i = 0; i < 2; i++) {
      const r = await get(url, { accept: ACCEPT_IMAGE_MANIFESTS })
      t.equal(r.status, 200)
      t.equal(r.headers.get('x-regmirror-cache'), 'stale')
      t.equal(r.headers.get('docker-content-digest'), img.digest)
      t.equal(sha256(r.body), img.digest)
    }
    t.ok(fake.count({ server: 'registry', method: 'HEAD', path: '/v2/library/app/manifests/1' }) >= 1, 'the upstream was asked')
    const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
    t.match(metrics, /regmirror_stale_served_total\{upstream="docker.io"\} 2/)
  })

  t.test(`without serveStaleOn, a ${status} on revalidation reaches the client (${code})`, async (t) => {
    const { fake, url } = await cachedTagWith(t, status === 404 ? [401, 403] : [404])
    refuse(fake)
    const r = await get(url, { accept: ACCEPT_IMAGE_MANIFESTS })
    t.equal(r.status, status)
    t.equal(errorCode(r.body), code)
  })
}
