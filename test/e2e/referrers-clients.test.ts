/**
 * Signatures through the mirror with real clients (issue #15): cosign's `sha256-<hex>.sig` tag copied by skopeo, and
 * the referrers API read with curl, from an upstream that has the API and from one that does not (the fake registry
 * plays both; the mirror reads the latter through the spec's `sha256-<hex>` fallback tag).
 */
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { runProgram } from '../helpers/child-program.js'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { startMirror } from '../helpers/mirror.js'
import type { FakeImage } from '../helpers/oci-fixtures.js'
import { requirePrograms } from '../helpers/programs.js'
import { skopeoCopy, skopeoInspect } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [1000] }
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json'

/** A signature manifest as cosign writes one: an image manifest whose one layer is the signed payload. */
function addSignature(fake: FakeRegistry, repo: string, img: FakeImage, payload: string, tag?: string) {
  const config = Buffer.from('{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}')
  const data = Buffer.from(payload)
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: SIG,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: fake.addBlob(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: fake.addBlob(data), size: data.length }],
      subject: { mediaType: img.mediaType, digest: img.digest, size: (img.index?.body ?? img.manifests[0]!.body).length },
    }),
  )
  return { digest: fake.addManifest(repo, body, OCI_MANIFEST, tag), size: body.length, payloadDigest: sha256(data) }
}

if (requirePrograms(t, ['skopeo', 'curl'])) {
  t.test('a cosign signature tag copied by skopeo, and referrers read with curl, from upstreams with and without the API', async (t) => {
    const withApi = await startFakeRegistry()
    const without = await startFakeRegistry({ auth: 'none', referrersApi: false })
    t.teardown(() => Promise.all([withApi.close(), without.close()]))
    const a = withApi.addImage('library/signed', '1', ONE)
    const aSig = addSignature(withApi, 'library/signed', a, '{"critical":{"image":"signed one"}}')
    const b = without.addImage('owner/app', '1', ONE)
    const bSig = addSignature(without, 'owner/app', b, '{"critical":{"image":"app one"}}', `sha256-${b.digest.slice(7)}.sig`)
    const fallback = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: bSig.digest, size: bSig.size, artifactType: SIG }],
      }),
    )
    without.addManifest('owner/app', fallback, OCI_INDEX, `sha256-${b.digest.slice(7)}`)
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: withApi.url },
        { name: 'ghcr.io', url: without.url },
      ],
    })
    const host = new URL(mirror.url).host

    // cosign's tag scheme: a client that predates the referrers API finds the signature by tag.
    const sigRef = `docker://${host}/ghcr.io/owner/app:sha256-${b.digest.slice(7)}.sig`
    const raw = await skopeoInspect(sigRef, { raw: true })
    t.equal(sha256(Buffer.from(raw.stdout)), bSig.digest, 'skopeo inspect --raw: the signature manifest, byte for byte')
    const dir = await makeTempDir('sig')
    t.teardown(() => removeTempDir(dir))
    await skopeoCopy(sigRef, `dir:${join(dir, 'sig')}`)
    const files = await readdir(join(dir, 'sig'))
    t.ok(files.includes(bSig.payloadDigest.slice(7)), 'skopeo copy: the signed payload came through the mirror')
    t.equal(sha256(await readFile(join(dir, 'sig', bSig.payloadDigest.slice(7)))), bSig.payloadDigest, 'and is intact')

    const curl = async (path: string) => {
      const { stdout } = await runProgram('curl', ['-sS', '--fail', '-H', `accept: ${OCI_INDEX}`, `${mirror.url}${path}`])
      return (JSON.parse(stdout) as { manifests: { digest: string; artifactType?: string }[] }).manifests
    }
    t.same(
      await curl(`/v2/signed/referrers/${a.digest}`),
      [{ mediaType: OCI_MANIFEST, digest: aSig.digest, size: aSig.size, artifactType: SIG }],
      'the referrers API of an upstream that has it',
    )
    t.same(
      (await curl(`/v2/ghcr.io/owner/app/referrers/${b.digest}?artifactType=${encodeURIComponent(SIG)}`)).map((m) => m.digest),
      [bSig.digest],
      'and of one that has not: the fallback tag',
    )
    const listed = await curl(`/v2/signed/referrers/${a.digest}`)
    const sigManifest = await skopeoInspect(`docker://${host}/library/signed@${listed[0]!.digest}`, { raw: true })
    t.equal(sha256(Buffer.from(sigManifest.stdout)), aSig.digest, 'a listed signature is fetched by digest with skopeo')
  })
}
