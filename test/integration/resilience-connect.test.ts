import t from 'tap'
import { startBlackHole } from '../helpers/black-hole.js'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_IMAGE_MANIFESTS, errorCode } from '../helpers/oci-http.js'

// An upstream behind a firewall that drops packets: the connect never completes, and only
// timeouts.connect (default 10 s) ends the wait. The client here gives up after 8 s, well before
// the OS would (about two minutes of SYN retries), so an answer at all means the timeout applied.
const CLIENT_PATIENCE_MS = 8000

async function fetchBounded(url: string) {
  const res = await fetch(url, { headers: { accept: ACCEPT_IMAGE_MANIFESTS }, signal: AbortSignal.timeout(CLIENT_PATIENCE_MS) })
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) }
}

const config = (url: string) => ({
  upstreams: [{ name: 'docker.io', url }],
  timeouts: { connect: '200ms' },
  retries: { attempts: 2 },
  offline: { failureThreshold: 100 },
  tagTtl: '50ms',
})

t.test('a connect that never completes: nothing cached gets UNAVAILABLE, a cached tag is served stale', async (t) => {
  const hole = await startBlackHole()
  t.teardown(() => hole.close())
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/app', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100] })

  // Cache the tag with a reachable upstream, then restart the mirror on the same data in front of the hole.
  const first = await startMirror(t, config(fake.url))
  t.equal((await fetchBounded(`${first.url}/v2/app/manifests/1`)).status, 200)
  await first.close()
  await sleep(80)
  const mirror = await startMirror(t, config(hole.url), { dataDir: first.dataDir })

  const cold = await fetchBounded(`${mirror.url}/v2/other/manifests/1`)
  t.equal(cold.status, 503)
  t.equal(errorCode(cold.body), 'UNAVAILABLE', 'the OCI error code')
  t.ok(
    mirror.logs.some((l) => l.includes('"code":"UPSTREAM_TIMEOUT"') && l.includes('Connect Timeout')),
    'the request log names the connect timeout',
  )

  const stale = await fetchBounded(`${mirror.url}/v2/app/manifests/1`)
  t.equal(stale.status, 200)
  t.equal(stale.headers.get('x-regmirror-cache'), 'stale', 'served stale when revalidation cannot connect')
  t.equal(sha256(stale.body), img.digest)
})
