import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { MANIFEST_ACCEPT as ACCEPT } from '../../src/oci/media-types.js'
import { runCli } from '../helpers/cli.js'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import type { FakeImage } from '../helpers/oci-fixtures.js'

/** Signatures and attestations travel with their images (issue #12): preload/export --with-referrers, the referrers API offline. */

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const SIG_TYPE = 'application/vnd.example.signature.v1'

async function tempDir(t: Test, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regmirror-ref-${name}-`))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** An OCI 1.1 artifact whose subject is `img`: one blob, the empty config. */
function addSignature(fake: FakeRegistry, repo: string, img: FakeImage, text: string, tag?: string): string {
  const empty = Buffer.from('{}')
  fake.addBlob(empty)
  const sig = Buffer.from(text)
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: SIG_TYPE,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 },
      layers: [{ mediaType: 'application/octet-stream', digest: fake.addBlob(sig), size: sig.length }],
      subject: { mediaType: img.mediaType, digest: img.digest, size: (img.index?.body ?? img.manifests[0]!.body).length },
    }),
  )
  return fake.addManifest(repo, body, OCI_MANIFEST, tag)
}

const flags = (fake: FakeRegistry, data: string) => ['--data', data, '--upstream', `docker.io=${fake.url}`, '--progress', 'none']
const CLOSED = ['--upstream', 'docker.io=http://127.0.0.1:9', '--progress', 'none']

t.test('referrers API: preloaded with the image, exported, imported, served offline', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/signed', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10_000] })
  const sig = addSignature(fake, 'library/signed', img, 'signature one')
  // cosign's tag scheme, for a client that predates the referrers API.
  const cosign = addSignature(fake, 'library/signed', img, 'cosign', `sha256-${img.digest.slice(7)}.sig`)

  const src = await tempDir(t, 'src')
  const pre = await runCli(['preload', ...flags(fake, src), '--with-referrers', 'signed:1'])
  t.equal(pre.code, 0, pre.stdout + pre.stderr)
  const archive = join(src, 'signed.tar')
  const exp = await runCli(['export', ...flags(fake, src), '--with-referrers', '-o', archive, 'signed:1'])
  t.equal(exp.code, 0, exp.stderr)

  const dst = await tempDir(t, 'dst')
  const imp = await runCli(['import', '--data', dst, ...CLOSED, archive])
  t.equal(imp.code, 0, imp.stdout + imp.stderr)
  t.match(imp.stdout, /ok {6}docker\.io\/library\/signed:1/)
  const mirror = await startMirror(
    t,
    { offline: { enabled: true }, upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }] },
    { dataDir: dst },
  )
  const list = await get(`${mirror.url}/v2/signed/referrers/${img.digest}`)
  t.equal(list.status, 200)
  t.equal(list.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json')
  const digests = (JSON.parse(list.body.toString()) as { manifests: { digest: string; artifactType?: string }[] }).manifests
  t.ok(
    digests.some((m) => m.digest === sig && m.artifactType === SIG_TYPE),
    'the signature is listed, with its artifact type, offline',
  )
  const filtered = await get(`${mirror.url}/v2/signed/referrers/${img.digest}?artifactType=none/such`)
  t.same((JSON.parse(filtered.body.toString()) as { manifests: unknown[] }).manifests, [])
  t.equal(filtered.headers.get('oci-filters-applied'), 'artifactType')
  const sigManifest = await get(`${mirror.url}/v2/signed/manifests/${sig}`, { accept: ACCEPT })
  t.equal(sha256(sigManifest.body), sig, 'the signature manifest is served')
  const tagged = await get(`${mirror.url}/v2/signed/manifests/sha256-${img.digest.slice(7)}.sig`, { accept: ACCEPT })
  t.equal(tagged.headers.get('docker-content-digest'), cosign, "cosign's tag came along")
})

t.test(
  'an upstream without the referrers API: the sha256-<hex> tag is the list (the spec fallback); online the mirror asks each time',
  async (t) => {
    const fake = await startFakeRegistry({ referrersApi: false })
    t.teardown(() => fake.close())
    const img = fake.addImage('library/old', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10_000] })
    const sig = addSignature(fake, 'library/old', img, 'sig')
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: OCI_MANIFEST, digest: sig, size: 0, artifactType: SIG_TYPE }],
      }),
    )
    fake.addManifest('library/old', index, 'application/vnd.oci.image.index.v1+json', `sha256-${img.digest.slice(7)}`)
    const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
    const list = await get(`${mirror.url}/v2/old/referrers/${img.digest}`)
    t.equal(list.status, 200)
    t.same(
      (JSON.parse(list.body.toString()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest),
      [sig],
    )
    const none = await get(`${mirror.url}/v2/old/referrers/sha256:${'c'.repeat(64)}`)
    t.equal(none.status, 200, 'no referrers is an empty list, not an error')
    t.same((JSON.parse(none.body.toString()) as { manifests: unknown[] }).manifests, [])
  },
)

t.test('preload --mirror warms a running mirror by pulling through it', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/warm', '1', { layerSizes: [100_000] })
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const r = await runCli(['preload', '--mirror', mirror.url, '--platform', 'linux/arm64', '--progress', 'plain', 'warm:1'])
  t.equal(r.code, 0, r.stdout + r.stderr)
  t.match(r.stdout, /ok {6}docker\.io\/library\/warm:1/)
  fake.reset()
  const arm = img.manifests.find((m) => m.platform?.architecture === 'arm64')!
  for (const b of arm.layers) {
    const res = await get(`${mirror.url}/v2/warm/blobs/${b.digest}`)
    t.equal(res.headers.get('x-regmirror-cache'), 'hit', 'the mirror has it now')
  }
  t.equal(fake.count({ server: 'cdn' }), 0)
  const pin = await runCli(['preload', '--mirror', mirror.url, '--pin', 'warm:1'])
  t.equal(pin.code, 2, '--pin with --mirror is a usage error')
  t.match(pin.stderr, /--pin keeps images in this machine/)
})
