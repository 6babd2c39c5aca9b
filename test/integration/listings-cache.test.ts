import t from 'tap'
import { MANIFEST_ACCEPT as ACCEPT } from '../../src/oci/media-types.js'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import type { FakeImage } from '../helpers/oci-fixtures.js'
import { errorCode } from '../helpers/oci-http.js'
import { sleep } from '../helpers/sleep.js'

/** Tag lists and referrers kept by the mirror (issue #15): within their TTL, stale when the upstream fails, pagination and filters kept. */

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100] }
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json'
const SBOM = 'application/spdx+json'

const tagsOf = (b: Buffer) => (JSON.parse(b.toString()) as { tags: string[] }).tags
const listed = (b: Buffer) => (JSON.parse(b.toString()) as { manifests: { digest: string; artifactType?: string }[] }).manifests

/** An OCI 1.1 artifact of `artifactType` whose subject is `img`. */
function addArtifact(
  fake: FakeRegistry,
  repo: string,
  img: FakeImage,
  artifactType: string,
  text: string,
  tag?: string,
): { digest: string; size: number } {
  const empty = Buffer.from('{}')
  fake.addBlob(empty)
  const data = Buffer.from(text)
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 },
      layers: [{ mediaType: 'application/octet-stream', digest: fake.addBlob(data), size: data.length }],
      subject: { mediaType: img.mediaType, digest: img.digest, size: (img.index?.body ?? img.manifests[0]!.body).length },
    }),
  )
  return { digest: fake.addManifest(repo, body, OCI_MANIFEST, tag), size: body.length }
}

t.test('tag lists: kept for the tagTtl page by page, Link pointed back at the mirror, stale when the upstream fails', async (t) => {
  const hub = await startFakeRegistry()
  const ghcr = await startFakeRegistry({ auth: 'none' })
  t.teardown(() => Promise.all([hub.close(), ghcr.close()]))
  for (const tag of ['a', 'b', 'c', 'd', 'e']) hub.addImage('library/tl', tag, ONE)
  for (const tag of ['1', '2', '3']) ghcr.addImage('owner/app', tag, ONE)
  ghcr.addImage('owner/never', '1', ONE)
  const mirror = await startMirror(t, {
    retries: { attempts: 1 },
    upstreams: [
      { name: 'docker.io', url: hub.url, tagTtl: '1h' },
      // Never fresh: every list is asked again, and the last good page is what a failure gets.
      { name: 'ghcr.io', url: ghcr.url, tagTtl: '0' },
    ],
  })

  const pages: string[][] = []
  let next: string | null = '/v2/tl/tags/list?n=2'
  while (next !== null && pages.length < 10) {
    const r = await get(`${mirror.url}${next}`)
    t.equal(r.status, 200)
    t.equal(r.headers.get('x-regmirror-cache'), 'miss', `${next}: asked upstream`)
    pages.push(tagsOf(r.body))
    const link = r.headers.get('link')
    next = link === null ? null : (/^<(\/v2\/tl\/tags\/list\?[^>]+)>; rel="next"$/.exec(link)?.[1] ?? 'bad link')
  }
  t.same(pages, [['a', 'b'], ['c', 'd'], ['e']], "the upstream's pages, followed through the mirror")
  const upstreamLists = hub.count({ path: /\/tags\/list/ })
  const again = await get(`${mirror.url}/v2/tl/tags/list?n=2&last=b`)
  t.equal(again.headers.get('x-regmirror-cache'), 'hit')
  t.same(tagsOf(again.body), ['c', 'd'])
  t.match(again.headers.get('link'), /last=d/, 'the kept page keeps its Link')
  t.equal(hub.count({ path: /\/tags\/list/ }), upstreamLists, 'within the tagTtl: not asked again')
  hub.addImage('library/tl', 'f', ONE)
  t.same(tagsOf((await get(`${mirror.url}/v2/tl/tags/list?n=2&last=d`)).body), ['e'], 'a kept page, however the upstream changed meanwhile')

  const first = await get(`${mirror.url}/v2/ghcr.io/owner/app/tags/list?n=2`)
  t.same(tagsOf(first.body), ['1', '2'])
  t.equal((await get(`${mirror.url}/v2/ghcr.io/owner/app/manifests/3`, { accept: ACCEPT })).status, 200, 'a tag pulled: a link on disk')
  ghcr.fault({ kind: 'status', status: 503, match: { path: /\/tags\/list/ } })
  const stale = await get(`${mirror.url}/v2/ghcr.io/owner/app/tags/list?n=2`)
  t.equal(stale.status, 200, 'the upstream fails: the last good page')
  t.equal(stale.headers.get('x-regmirror-cache'), 'stale')
  t.same(tagsOf(stale.body), ['1', '2'])
  t.match(stale.headers.get('link'), /^<\/v2\/ghcr\.io\/owner\/app\/tags\/list\?n=2&last=2>; rel="next"$/)
  const fromLinks = await get(`${mirror.url}/v2/ghcr.io/owner/app/tags/list`)
  t.equal(fromLinks.headers.get('x-regmirror-cache'), 'stale', 'a page never fetched: the tags the mirror holds')
  t.same(tagsOf(fromLinks.body), ['3'])
  const none = await get(`${mirror.url}/v2/ghcr.io/owner/never/tags/list`)
  t.equal(none.status, 502, "nothing held: the upstream's failure")
  t.equal(errorCode(none.body), 'UNAVAILABLE')
  ghcr.clearFaults()
  const unknown = await get(`${mirror.url}/v2/ghcr.io/owner/nothing/tags/list`)
  t.equal(unknown.status, 404, "the upstream's 404 is the answer, not a failure")
  t.equal(errorCode(unknown.body), 'NAME_UNKNOWN')
  ghcr.fault({ kind: 'endless', match: { path: /\/tags\/list/ } })
  const endless = await get(`${mirror.url}/v2/ghcr.io/owner/never/tags/list`)
  t.equal(endless.status, 502, 'an endless list is refused within its bound')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_listing_answers_total\{kind="tags",source="stale"\} 2/)
  t.match(metrics, /regmirror_listing_answers_total\{kind="tags",source="cache"\} 2/)
})

t.test('referrers: from an upstream with the API, kept for referrers.cacheTtl, artifactType passed on, stale on failure', async (t) => {
  const hub = await startFakeRegistry({ auth: 'none' })
  t.teardown(() => hub.close())
  const img = hub.addImage('library/signed', '1', ONE)
  const sig = addArtifact(hub, 'library/signed', img, SIG, 'signature')
  const sbom = addArtifact(hub, 'library/signed', img, SBOM, 'sbom')
  const mirror = await startMirror(t, {
    retries: { attempts: 1 },
    referrers: { cacheTtl: '1s' },
    upstreams: [{ name: 'docker.io', url: hub.url }],
  })
  const path = `/v2/signed/referrers/${img.digest}`
  const upstreamAsks = () => hub.count({ path: new RegExp(`/referrers/`) })

  const first = await get(`${mirror.url}${path}`)
  t.equal(first.status, 200)
  t.equal(first.headers.get('content-type'), OCI_INDEX)
  t.equal(first.headers.get('x-regmirror-cache'), 'miss')
  t.same(
    listed(first.body)
      .map((m) => m.digest)
      .sort(),
    [sig.digest, sbom.digest].sort(),
  )
  t.equal(first.headers.get('oci-filters-applied'), null, 'no filter asked, none applied')
  const later = addArtifact(hub, 'library/signed', img, SIG, 'a second signature')
  const again = await get(`${mirror.url}${path}`)
  t.equal(again.headers.get('x-regmirror-cache'), 'hit', 'asked again at once: from memory')
  t.equal(listed(again.body).length, 2, 'so a signature added meanwhile is not seen yet')
  t.equal(upstreamAsks(), 1)

  const sigs = await get(`${mirror.url}${path}?artifactType=${encodeURIComponent(SIG)}`)
  t.same(
    listed(sigs.body)
      .map((m) => m.digest)
      .sort(),
    [sig.digest, later.digest].sort(),
    'only the signatures',
  )
  t.equal(sigs.headers.get('oci-filters-applied'), 'artifactType')
  t.equal(hub.count({ path: /\/referrers\/.*\?artifactType=application%2Fvnd\.dev\.cosign/ }), 1, 'the filter was passed on')

  await sleep(1200)
  const fresh = await get(`${mirror.url}${path}`)
  t.equal(fresh.headers.get('x-regmirror-cache'), 'miss', 'after the TTL: asked again')
  t.ok(
    listed(fresh.body).some((m) => m.digest === later.digest),
    'and the new signature is listed',
  )

  await sleep(1200)
  hub.fault({ kind: 'status', status: 503, match: { path: /\/referrers\// } })
  const stale = await get(`${mirror.url}${path}`)
  t.equal(stale.status, 200, 'the upstream fails: the stored list')
  t.equal(stale.headers.get('x-regmirror-cache'), 'stale')
  t.equal(listed(stale.body).length, 3)
  const staleSigs = await get(`${mirror.url}${path}?artifactType=${encodeURIComponent(SIG)}`)
  t.equal(staleSigs.headers.get('x-regmirror-cache'), 'stale')
  t.same(
    listed(staleSigs.body)
      .map((m) => m.digest)
      .sort(),
    [sig.digest, later.digest].sort(),
    'filtered by the mirror',
  )
  t.equal(staleSigs.headers.get('oci-filters-applied'), 'artifactType')
})

t.test('referrers: from an upstream without the API, through the sha256-<hex> fallback tag; cosign .sig tags are tags', async (t) => {
  const old = await startFakeRegistry({ auth: 'none', referrersApi: false })
  t.teardown(() => old.close())
  const img = old.addImage('owner/app', '1', ONE)
  const sig = addArtifact(old, 'owner/app', img, SIG, 'signature')
  const sbom = addArtifact(old, 'owner/app', img, SBOM, 'sbom')
  // What a client pushing to a registry without the API maintains: an index tagged with the subject's digest.
  const fallback = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.size, artifactType: SIG },
        { mediaType: OCI_MANIFEST, digest: sbom.digest, size: sbom.size, artifactType: SBOM },
      ],
    }),
  )
  old.addManifest('owner/app', fallback, OCI_INDEX, `sha256-${img.digest.slice(7)}`)
  const cosign = addArtifact(old, 'owner/app', img, SIG, 'cosign', `sha256-${img.digest.slice(7)}.sig`)
  const mirror = await startMirror(t, {
    upstreams: [
      { name: 'ghcr.io', url: old.url },
      { name: 'docker.io', url: 'http://127.0.0.1:9' },
    ],
  })

  const list = await get(`${mirror.url}/v2/ghcr.io/owner/app/referrers/${img.digest}`)
  t.equal(list.status, 200)
  t.same(
    listed(list.body).map((m) => m.digest),
    [sig.digest, sbom.digest],
    'the fallback index’s descriptors',
  )
  t.equal(old.count({ path: `/v2/owner/app/manifests/sha256-${img.digest.slice(7)}` }), 1, 'read through the fallback tag')
  const sboms = await get(`${mirror.url}/v2/ghcr.io/owner/app/referrers/${img.digest}?artifactType=${encodeURIComponent(SBOM)}`)
  t.same(
    listed(sboms.body).map((m) => m.digest),
    [sbom.digest],
    'filtered by the mirror',
  )
  t.equal(sboms.headers.get('oci-filters-applied'), 'artifactType')
  const none = await get(`${mirror.url}/v2/ghcr.io/owner/app/referrers/sha256:${'0'.repeat(64)}`)
  t.equal(none.status, 200, 'a subject without referrers: an empty list')
  t.same(listed(none.body), [])

  const tagged = await get(`${mirror.url}/v2/ghcr.io/owner/app/manifests/sha256-${img.digest.slice(7)}.sig`, { accept: ACCEPT })
  t.equal(tagged.status, 200, "cosign's tag")
  t.equal(sha256(tagged.body), cosign.digest)
})
