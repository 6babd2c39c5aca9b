// The negative cache (issue #14): a 404 for a tag or a manifest is remembered for the upstream's negativeTtl, so a
// storm of requests for a reference that does not exist reaches the upstream once; it never hides what the
// mirror holds, and it is per upstream, repository and reference.
import t from 'tap'
import { startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_IMAGE_MANIFESTS, errorCode } from '../helpers/oci-http.js'
import { sleep } from '../helpers/sleep.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100] }

const pull = (base: string, repo: string, ref: string) => get(`${base}/v2/${repo}/manifests/${ref}`, { accept: ACCEPT_IMAGE_MANIFESTS })

/** 404s the registry sent for this reference. */
const notFounds = (fake: FakeRegistry, repo: string, ref: string) =>
  fake.requests.filter((r) => r.server === 'registry' && r.path === `/v2/${repo}/manifests/${ref}` && r.status === 404).length

t.test('a storm of 100 requests for a missing tag reaches the upstream once', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, negativeTtl: '1h' }] })
  for (let batch = 0; batch < 5; batch++) {
    const answers = await Promise.all(Array.from({ length: 20 }, () => pull(mirror.url, 'nosuch', 'v1')))
    for (const r of answers) {
      t.equal(r.status, 404)
      t.equal(errorCode(r.body), 'MANIFEST_UNKNOWN')
    }
  }
  t.equal(notFounds(fake, 'library/nosuch', 'v1'), 1, 'asked once')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_negative_cache_hits_total\{upstream="docker.io"\} \d+/)

  t.equal((await pull(mirror.url, 'other', 'v1')).status, 404)
  t.equal(notFounds(fake, 'library/other', 'v1'), 1, 'another repository is asked for itself')
})

t.test('after negativeTtl the upstream is asked again', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, negativeTtl: '300ms' }] })
  t.equal((await pull(mirror.url, 'nosuch', 'v1')).status, 404)
  const img = fake.addImage('library/nosuch', 'v1', ONE)
  await sleep(400)
  const after = await pull(mirror.url, 'nosuch', 'v1')
  t.equal(after.status, 200, 'asked again, and the upstream has it now')
  t.equal(after.headers.get('docker-content-digest'), img.digest)
  t.equal(notFounds(fake, 'library/nosuch', 'v1'), 1)
})

t.test('negativeTtl 0 disables it', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { negativeTtl: 0, upstreams: [{ name: 'docker.io', url: fake.url }] })
  for (let i = 0; i < 3; i++) t.equal((await pull(mirror.url, 'nosuch', 'v1')).status, 404)
  t.equal(notFounds(fake, 'library/nosuch', 'v1'), 3)
})

t.test('a remembered 404 never hides a manifest the mirror got meanwhile', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/app', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, negativeTtl: '1h' }] })
  fake.fault({ kind: 'status', status: 404, times: 1, match: { server: 'registry', path: `/v2/library/app/manifests/${img.digest}` } })
  t.equal((await pull(mirror.url, 'app', img.digest)).status, 404, 'the upstream said 404 once')
  t.equal((await pull(mirror.url, 'app', img.digest)).status, 404, 'remembered')
  t.equal((await pull(mirror.url, 'app', '1')).status, 200, 'the tag brings the same manifest')
  const r = await pull(mirror.url, 'app', img.digest)
  t.equal(r.status, 200, 'served from the cache despite the remembered 404')
  t.equal(r.headers.get('docker-content-digest'), img.digest)
})

t.test('a tag deleted upstream is remembered as missing after its cached copy is dropped', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  fake.addImage('library/app', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, negativeTtl: '1h' }], tagTtl: '50ms' })
  t.equal((await pull(mirror.url, 'app', '1')).status, 200)
  fake.deleteTag('library/app', '1')
  await sleep(80)
  for (let i = 0; i < 5; i++) t.equal((await pull(mirror.url, 'app', '1')).status, 404)
  t.equal(notFounds(fake, 'library/app', '1'), 1, 'the revalidation 404 reached the upstream; the rest were remembered')
})
