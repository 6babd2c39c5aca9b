import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'

t.test('a cached token the upstream rejects is replaced, not sent again', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const img = fake.addImage('library/alpine', '3.20')
  const first = await get(`${mirror.url}/v2/alpine/manifests/3.20`, { accept: img.mediaType })
  t.equal(first.status, 200)
  const tokensBefore = fake.count({ server: 'auth' })
  t.ok(tokensBefore >= 1)

  // Revoked or expired early upstream (Docker Hub does this on password changes): the mirror still holds it.
  fake.expireTokens()
  const blob = img.blobs[0]!
  const res = await get(`${mirror.url}/v2/alpine/blobs/${blob.digest}`)
  t.equal(res.status, 200, 'the blob is served after a fresh token')
  t.equal(sha256(res.body), blob.digest)
  t.equal(fake.count({ server: 'auth' }), tokensBefore + 1, 'exactly one new token was fetched')
})

t.test('concurrent cold requests for one repository share one token request', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const img = fake.addImage('library/many', '1')
  const all = await Promise.all(img.blobs.map((b) => get(`${mirror.url}/v2/many/blobs/${b.digest}`)))
  for (const [i, r] of all.entries()) t.equal(sha256(r.body), img.blobs[i]!.digest)
  t.ok(img.blobs.length >= 4)
  t.equal(fake.count({ server: 'auth' }), 1, `one token for ${img.blobs.length} concurrent blob requests`)
})
