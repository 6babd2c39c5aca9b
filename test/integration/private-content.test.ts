import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_ALL_MANIFESTS as ACCEPT, errorCode } from '../helpers/oci-http.js'
import { sha256 } from '../helpers/oci-fixtures.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [20_000] }
const CREDS = { username: 'robot', password: 'private-s3cret' }

async function fake(t: Test, opts: Parameters<typeof startFakeRegistry>[0] = {}): Promise<FakeRegistry> {
  const f = await startFakeRegistry(opts)
  t.teardown(() => f.close())
  return f
}

async function setup(t: Test, dataDir?: string) {
  // A private registry (its token realm wants the mirror's credentials) and two public ones.
  const priv = await fake(t, { credentials: CREDS, scopedBlobs: true })
  const hub = await fake(t)
  const quay = await fake(t)
  const secret = priv.addImage('team/secret', '1', ONE)
  priv.addImage('team/other', '1', ONE)
  const pub = hub.addImage('library/alpine', '3', ONE)
  // The same public layer exists on quay too (content is content): sharing it by digest is right.
  for (const b of pub.blobs) quay.addBlob(b.bytes)
  const config = {
    defaultUpstream: 'docker.io',
    upstreams: [
      { name: 'docker.io', url: hub.url },
      { name: 'quay.io', url: quay.url },
      { name: 'registry.internal', url: priv.url, credentials: CREDS, realms: [new URL(priv.authUrl).host] },
    ],
  }
  const mirror = await startMirror(t, config, dataDir ? { dataDir } : {})
  return { priv, hub, quay, secret, pub, mirror, config }
}

t.test('what a private upstream brought is served only through it, for the repository that confirmed it', async (t) => {
  const { priv, hub, quay, secret, pub, mirror } = await setup(t)
  // Pulled through the private upstream: manifest and every blob are in the cache now.
  const m = await get(`${mirror.url}/v2/registry.internal/team/secret/manifests/1`, { accept: ACCEPT })
  t.equal(m.status, 200)
  t.equal(sha256(m.body), secret.digest)
  for (const b of secret.blobs)
    t.equal(sha256((await get(`${mirror.url}/v2/registry.internal/team/secret/blobs/${b.digest}`)).body), b.digest)
  const layer = secret.manifests[0]!.layers[0]!
  priv.reset()
  hub.reset()

  // Every other way of asking for the same digests: other upstreams by prefix, ?ns= and the default, another
  // repository of the private upstream; blobs and manifests, GET and HEAD.
  const paths = [
    `/v2/team/secret/blobs/${layer.digest}`,
    `/v2/library/x/blobs/${layer.digest}`,
    `/v2/docker.io/team/secret/blobs/${layer.digest}`,
    `/v2/team/secret/blobs/${layer.digest}?ns=docker.io`,
    `/v2/quay.io/team/secret/blobs/${layer.digest}`,
    `/v2/registry.internal/team/other/blobs/${layer.digest}`,
    `/v2/team/other/blobs/${layer.digest}?ns=registry.internal`,
    `/v2/team/secret/manifests/${secret.digest}`,
    `/v2/quay.io/team/secret/manifests/${secret.digest}`,
    `/v2/registry.internal/team/other/manifests/${secret.digest}`,
  ]
  for (const path of paths) {
    for (const method of ['GET', 'HEAD']) {
      const r = await get(`${mirror.url}${path}`, { accept: ACCEPT }, method)
      t.equal(r.status, 404, `${method} ${path}: not served`)
      if (method === 'GET') t.match(errorCode(r.body), /^(BLOB|MANIFEST)_UNKNOWN$/)
      t.not(r.body.length > 0 && sha256(r.body) === layer.digest, true, 'not the private bytes')
    }
  }
  t.ok(hub.count({ method: 'HEAD' }) > 0 && quay.count({ method: 'HEAD' }) > 0, 'the public upstreams were asked, and said no')
  t.equal(priv.count({ path: /team\/other\/blobs/, method: 'HEAD' }) > 0, true, 'the other private repository was asked, and said no')

  // Through the private upstream's own repository: from the cache, without asking again.
  priv.reset()
  const again = await get(`${mirror.url}/v2/registry.internal/team/secret/blobs/${layer.digest}`)
  t.equal(sha256(again.body), layer.digest)
  t.equal(again.headers.get('x-regmirror-cache'), 'hit')
  t.equal(priv.count({}), 0, 'a confirmed repository needs no upstream request')

  // Public content is still shared by digest between public upstreams.
  for (const b of pub.blobs) t.equal(sha256((await get(`${mirror.url}/v2/alpine/blobs/${b.digest}`)).body), b.digest)
  quay.reset()
  const shared = await get(`${mirror.url}/v2/quay.io/some/image/blobs/${pub.blobs[0]!.digest}`)
  t.equal(sha256(shared.body), pub.blobs[0]!.digest)
  t.equal(shared.headers.get('x-regmirror-cache'), 'hit')
  t.equal(quay.count({}), 0, 'public content needs no confirmation')

  // The private upstream's credentials and tokens appear nowhere a client or an operator's pipeline reads.
  const tokens = priv.requests.map((q) => String(q.headers.authorization ?? '').replace(/^(Bearer|Basic) /, '')).filter((x) => x !== '')
  const seen = [mirror.logs.join('\n'), (await get(`${mirror.url}/metrics`)).body.toString()].join('\n')
  t.notMatch(seen, CREDS.password)
  for (const tok of new Set(tokens)) t.notMatch(seen, tok, 'no token or Basic credentials')
})

t.test('confirmations are on disk: they hold after a restart, with the private upstream down', async (t) => {
  const first = await setup(t)
  const layer = first.secret.manifests[0]!.layers[0]!
  t.equal(sha256((await get(`${first.mirror.url}/v2/registry.internal/team/secret/blobs/${layer.digest}`)).body), layer.digest)
  await first.mirror.close()
  t.same(await readdir(join(first.mirror.dataDir, 'repositories', 'registry.internal', 'team', 'secret', '_content')), [
    layer.digest.slice(7),
  ])
  await first.priv.close()
  const second = await startMirror(t, first.config, { dataDir: first.mirror.dataDir })
  const r = await get(`${second.url}/v2/registry.internal/team/secret/blobs/${layer.digest}`)
  t.equal(r.status, 200, 'served from the cache with the upstream down')
  t.equal(sha256(r.body), layer.digest)
  const other = await get(`${second.url}/v2/library/x/blobs/${layer.digest}`)
  t.equal(other.status, 404, 'and still not through a public upstream')
})
