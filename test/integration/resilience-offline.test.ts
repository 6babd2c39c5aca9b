import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_IMAGE_MANIFESTS } from '../helpers/oci-http.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100] }

t.test('offline marking: after K failures answers come from cache at once, one probe after the cool-down', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const tags = ['a', 'b', 'c', 'd']
  const imgs = tags.map((tag) => fake.addImage('library/off', tag, ONE))
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: fake.url }],
    tagTtl: '10ms',
    retries: { attempts: 1 },
    offline: { failureThreshold: 2, coolDown: '1500ms' },
  })
  const tagUrl = (tag: string) => `${mirror.url}/v2/off/manifests/${tag}`
  const online = async () =>
    /regmirror_upstream_online\{upstream="docker.io"\} (\d)/.exec((await get(`${mirror.url}/metrics`)).body.toString())?.[1]
  for (const tag of tags) t.equal((await get(tagUrl(tag), { accept: ACCEPT_IMAGE_MANIFESTS })).status, 200)
  const layer = imgs[0]!.manifests[0]!.layers[0]!
  t.equal((await get(`${mirror.url}/v2/off/blobs/${layer.digest}`)).status, 200)
  t.equal(await online(), '1')

  fake.fault({ kind: 'status', status: 503, match: { server: 'registry' } })
  await sleep(20)
  for (const tag of ['a', 'b'])
    t.equal((await get(tagUrl(tag), { accept: ACCEPT_IMAGE_MANIFESTS })).headers.get('x-regmirror-cache'), 'stale')
  t.equal(await online(), '0', 'marked offline after 2 failures')
  t.equal(mirror.logs.filter((l) => l.includes('upstream marked offline')).length, 1, 'one log line for the change')

  fake.reset()
  for (const tag of tags) {
    const r = await get(tagUrl(tag), { accept: ACCEPT_IMAGE_MANIFESTS })
    t.equal(r.headers.get('x-regmirror-cache'), 'stale', `${tag} from cache while offline`)
    t.equal(sha256(r.body), r.headers.get('docker-content-digest'))
  }
  t.equal((await get(`${mirror.url}/v2/off/blobs/${layer.digest}`)).status, 200, 'cached blobs are served')
  const miss = await get(tagUrl('never-pulled'), { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(miss.status, 503, 'something not cached fails at once')
  t.match(miss.headers.get('retry-after') ?? '', /^[12]$/, 'with Retry-After: the rest of the cool-down')
  t.equal(fake.count({}), 0, 'no upstream request while offline')

  // After the cool-down: several requests at once, exactly one goes upstream as the probe. It fails.
  await sleep(1600)
  await Promise.all(tags.map((tag) => get(tagUrl(tag), { accept: ACCEPT_IMAGE_MANIFESTS })))
  t.equal(fake.count({ server: 'registry' }), 1, 'one probe')
  t.equal(await online(), '0', 'a failed probe keeps it offline')

  // Next cool-down: the upstream is back; the probe brings it online.
  fake.clearFaults()
  fake.reset()
  await sleep(1600)
  const back = await get(tagUrl('a'), { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(back.status, 200)
  t.not(back.headers.get('x-regmirror-cache'), 'stale', 'answered after asking the upstream')
  t.equal(await online(), '1')
  t.equal(mirror.logs.filter((l) => l.includes('upstream is back online')).length, 1)
})
