import t from 'tap'
import { MANIFEST_ACCEPT as ACCEPT } from '../../src/oci/media-types.js'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { errorCode } from '../helpers/oci-http.js'

/** `offline.enabled` / `--offline` (issue #12): only the cache answers, nothing dials out. */

async function pullAll(base: string, name: string, tag: string): Promise<string[]> {
  const bad: string[] = []
  const idx = await get(`${base}/v2/${name}/manifests/${tag}`, { accept: ACCEPT })
  if (idx.status !== 200) return [`tag ${idx.status}`]
  const doc = JSON.parse(idx.body.toString()) as { manifests: { digest: string }[] }
  for (const m of doc.manifests) {
    const man = await get(`${base}/v2/${name}/manifests/${m.digest}`, { accept: ACCEPT })
    if (man.status !== 200 || sha256(man.body) !== m.digest) bad.push(`manifest ${m.digest} ${man.status}`)
    if (man.status !== 200) continue
    const mdoc = JSON.parse(man.body.toString()) as { config: { digest: string }; layers: { digest: string }[] }
    for (const b of [mdoc.config, ...mdoc.layers]) {
      const blob = await get(`${base}/v2/${name}/blobs/${b.digest}`)
      if (blob.status !== 200 || sha256(blob.body) !== b.digest) bad.push(`blob ${b.digest} ${blob.status}`)
    }
  }
  return bad
}

t.test('offline: cached images pull with their tags whatever their age; nothing else is asked for, and misses say why', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/app', '1')
  fake.addImage('library/app', '2')
  fake.addImage('library/other', '1')
  const online = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url, tagTtl: '1ms' }] })
  t.same(await pullAll(online.url, 'app', '1'), [], 'pulled online')
  t.same(await pullAll(online.url, 'app', '2'), [], 'pulled online')
  await online.close()
  fake.reset()

  // The upstream is still there and would answer: offline must not ask it anything.
  const mirror = await startMirror(
    t,
    { offline: { enabled: true }, upstreams: [{ name: 'docker.io', url: fake.url, tagTtl: '1ms' }] },
    {
      dataDir: online.dataDir,
    },
  )
  t.same(await pullAll(mirror.url, 'app', '1'), [], 'the cached image pulls, its tag long past its TTL')
  const tag = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT })
  t.equal(tag.headers.get('docker-content-digest'), img.digest, 'the tag resolves to what was cached')
  t.equal(tag.headers.get('x-regmirror-cache'), 'hit')

  const missTag = await get(`${mirror.url}/v2/other/manifests/1`, { accept: ACCEPT })
  t.equal(missTag.status, 404, 'a tag never cached is unknown')
  t.equal(errorCode(missTag.body), 'MANIFEST_UNKNOWN')
  t.match(missTag.body.toString(), /offline.*not in its cache/, 'the message says the mirror is offline')
  const missDigest = await get(`${mirror.url}/v2/app/manifests/sha256:${'a'.repeat(64)}`, { accept: ACCEPT })
  t.equal(missDigest.status, 404)
  t.equal(errorCode(missDigest.body), 'MANIFEST_UNKNOWN')
  const missBlob = await get(`${mirror.url}/v2/app/blobs/sha256:${'b'.repeat(64)}`)
  t.equal(missBlob.status, 404)
  t.equal(errorCode(missBlob.body), 'BLOB_UNKNOWN')
  t.match(missBlob.body.toString(), /offline/)
  const headMiss = await get(`${mirror.url}/v2/app/blobs/sha256:${'b'.repeat(64)}`, {}, 'HEAD')
  t.equal(headMiss.status, 404, 'HEAD of an uncached blob: 404')

  const list = await get(`${mirror.url}/v2/app/tags/list`)
  t.equal(list.status, 200)
  t.same(JSON.parse(list.body.toString()), { name: 'library/app', tags: ['1', '2'] }, 'the tag list is what the cache holds')
  const page = await get(`${mirror.url}/v2/app/tags/list?n=1`)
  t.same((JSON.parse(page.body.toString()) as { tags: string[] }).tags, ['1'])
  t.match(page.headers.get('link') ?? '', /<\/v2\/app\/tags\/list\?n=1&last=1>; rel="next"/, 'paginated like distribution')
  const noTags = await get(`${mirror.url}/v2/other/tags/list`)
  t.equal(noTags.status, 404)
  t.equal(errorCode(noTags.body), 'NAME_UNKNOWN')

  t.equal(fake.requests.length, 0, 'not one request reached the upstream, not even for a token')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.notMatch(metrics, /regmirror_upstream_requests_total\{upstream="docker.io"/, 'no upstream request was counted')
})

t.test('offline per upstream: one upstream cache-only, another still fetched', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  fake.addImage('library/app', '1')
  fake.addImage('team/tool', '1')
  const mirror = await startMirror(t, {
    defaultUpstream: 'hub',
    upstreams: [
      { name: 'hub', url: fake.url, offline: true },
      { name: 'internal', url: fake.url },
    ],
  })
  const hub = await get(`${mirror.url}/v2/hub/library/app/manifests/1`, { accept: ACCEPT })
  t.equal(hub.status, 404, 'the offline upstream is not asked')
  t.equal(errorCode(hub.body), 'MANIFEST_UNKNOWN')
  t.same(await pullAll(mirror.url, 'internal/team/tool', '1'), [], 'the online one is')
  t.equal(fake.count({ server: 'registry', path: /\/library\/app\// }), 0, 'nothing asked on behalf of the offline upstream')
})
