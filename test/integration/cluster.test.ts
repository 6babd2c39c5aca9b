import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { signPeerRequest } from '../../src/cluster/peer-auth.js'
import { ownerOf } from '../../src/cluster/rendezvous.js'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { freePort } from '../helpers/free-port.js'
import { get, startMirror, type TestMirror } from '../helpers/mirror.js'
import { errorCode } from '../helpers/oci-http.js'

/** Replicas that fetch each blob once (issue #13): rendezvous owners, the signed peer route, an owner gone. */

const SECRET = 'a-cluster-secret-of-some-length'

async function cluster(t: Test, fake: FakeRegistry, n: number): Promise<TestMirror[]> {
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()))
  const urls = ports.map((p) => `http://127.0.0.1:${p}`)
  const mirrors: TestMirror[] = []
  for (const [i, port] of ports.entries()) {
    mirrors.push(
      await startMirror(t, {
        listen: `127.0.0.1:${port}`,
        upstreams: [{ name: 'docker.io', url: fake.url }],
        cluster: { peers: urls, self: urls[i], secret: SECRET },
      }),
    )
  }
  return mirrors
}

const blobFile = (m: TestMirror, digest: string) => join(m.dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7))

t.test('three replicas: every blob comes from upstream once, through its owner, and only the owner keeps it', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/spread', '1', { layerSizes: Array.from({ length: 9 }, (_, i) => 100_000 + i) })
  const mirrors = await cluster(t, fake, 3)
  const urls = mirrors.map((m) => m.url)
  // Every replica is asked for every blob, all at once.
  const results = await Promise.all(
    mirrors.flatMap((m) =>
      img.blobs.map(async (b) => ({ ok: sha256((await get(`${m.url}/v2/spread/blobs/${b.digest}`)).body) === b.digest, b })),
    ),
  )
  t.ok(
    results.every((r) => r.ok),
    'every body verified on every replica',
  )
  for (const b of img.blobs) {
    t.equal(
      fake.count({ path: new RegExp(b.digest.slice(7)), method: 'GET', server: 'cdn' }),
      1,
      `${b.digest.slice(7, 19)} fetched from upstream once`,
    )
    const owner = ownerOf(b.digest, urls)
    for (const m of mirrors)
      t.equal(existsSync(blobFile(m, b.digest)), m.url === owner, `kept by its owner only (${m.url === owner ? 'owner' : 'not'})`)
  }
  const owners = new Set(img.blobs.map((b) => ownerOf(b.digest, urls)))
  t.ok(owners.size >= 2, 'the blobs are spread over the replicas')
  const metrics = (await get(`${mirrors[0]!.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_cluster_peers\{state="up"\} 3/)
  t.match(metrics, /regmirror_peer_fetches_total\{result="ok"\} [1-9]/)
})

t.test('the peer route: nothing without a valid signature, never passed on', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/door', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [50_000] })
  const [a] = await cluster(t, fake, 2)
  const layer = img.manifests[0]!.layers[0]!
  const path = `/_regmirror/peer/v2/library/door/blobs/${layer.digest}?ns=docker.io`
  for (const header of [
    undefined,
    'nonsense',
    signPeerRequest('wrong-secret-wrong-secret', path),
    signPeerRequest(SECRET, path, Date.now() - 120_000),
  ]) {
    const r = await get(`${a!.url}${path}`, header === undefined ? {} : { 'x-regmirror-peer': header })
    t.equal(r.status, 404, `refused (${header === undefined ? 'no signature' : 'bad signature'})`)
    t.equal(errorCode(r.body), 'NAME_UNKNOWN', 'and looks like no route at all')
  }
  const signedManifest = `/_regmirror/peer/v2/library/door/manifests/1?ns=docker.io`
  t.equal(
    (await get(`${a!.url}${signedManifest}`, { 'x-regmirror-peer': signPeerRequest(SECRET, signedManifest) })).status,
    404,
    'blobs only',
  )
  t.equal(fake.requests.length, 0, 'none of it reached the upstream')
  const ok = await get(`${a!.url}${path}`, { 'x-regmirror-peer': signPeerRequest(SECRET, path) })
  t.equal(ok.status, 200, 'a signed request is served')
  t.equal(sha256(ok.body), layer.digest)
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1, 'from upstream, by the replica asked: a peer request is not passed on')
})

t.test('an owner that is gone: the replica asked fetches from upstream itself', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/gone', '1', {
    platforms: [{ os: 'linux', architecture: 'amd64' }],
    layerSizes: Array.from({ length: 6 }, (_, i) => 60_000 + i),
  })
  const [a, b] = await cluster(t, fake, 2)
  await a!.close()
  const owned = img.blobs.filter((x) => ownerOf(x.digest, [a!.url, b!.url]) === a!.url)
  t.ok(owned.length > 0, 'some blobs are owned by the replica that is gone')
  for (const x of owned) t.equal(sha256((await get(`${b!.url}/v2/gone/blobs/${x.digest}`)).body), x.digest, 'served anyway')
  const metrics = (await get(`${b!.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_peer_fetches_total\{result="fallback"\} 1\b/, 'one failed try, then the peer is left out for a while')
  t.match(metrics, /regmirror_cluster_peers\{state="down"\} 1/)
})

t.test('readiness: /readyz says ready once listening, /healthz always answers', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const m = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  t.same(JSON.parse((await get(`${m.url}/readyz`)).body.toString()), { status: 'ready' })
  m.app.services.status.draining = true
  const draining = await get(`${m.url}/readyz`)
  t.equal(draining.status, 503, 'not ready while draining')
  t.same(JSON.parse(draining.body.toString()), { status: 'draining' })
  t.equal((await get(`${m.url}/healthz`)).status, 200, 'but alive')
  m.app.services.status.ready = false
  m.app.services.status.draining = false
  const starting = await get(`${m.url}/v2/library/x/manifests/1`)
  t.equal(starting.status, 503, 'registry requests wait while the index is rebuilt')
  t.equal(starting.headers.get('retry-after'), '5')
  t.match(starting.body.toString(), /starting/)
})

t.test('a cluster needs its own URL and a secret', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const err = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], cluster: { peers: ['http://127.0.0.1:1'] } }).catch(
    (e: unknown) => e as { problems?: string[] },
  )
  t.match((err as { problems?: string[] }).problems?.join('\n'), /cluster\.self: required[\s\S]*cluster\.secret: required/)
})
