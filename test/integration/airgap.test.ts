import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import tar from 'tar-stream'
import { verifyDataDir } from '../../src/cache/verify.js'
import { MANIFEST_ACCEPT as ACCEPT } from '../../src/oci/media-types.js'
import { runCli } from '../helpers/cli.js'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { errorCode } from '../helpers/oci-http.js'

/**
 * The air-gap workflow against the fake registry (issue #12): preload on the connected side,
 * export, import on the closed side into a mirror that is offline. The e2e suite does the same
 * with CNCF distribution and real clients.
 */

async function tempDir(t: Test, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regmirror-airgap-${name}-`))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

// docker.io with its URL pointed at the fake: Docker Hub's rules (`library/`) apply.
const flags = (fake: FakeRegistry, data: string) => ['--data', data, '--upstream', `docker.io=${fake.url}`]
const CLOSED = ['--upstream', 'docker.io=http://127.0.0.1:9']
const closedConfig = { offline: { enabled: true }, upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }] }

/** The entries of a tar file: name → bytes. */
async function tarEntries(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  const extract = tar.extract()
  extract.end(await readFile(file))
  for await (const entry of extract) {
    const chunks: Buffer[] = []
    for await (const c of entry) chunks.push(c as Buffer)
    out.set(entry.header.name, Buffer.concat(chunks))
  }
  return out
}

t.test('preload one platform, export, import offline: the closed side serves the same digests', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const app = fake.addImage('library/app', '1', { layerSizes: [300_000, 1_200_000] })
  const tool = fake.addImage('team/tool', '2.0', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [50_000] })
  const amd = app.manifests.find((m) => m.platform?.architecture === 'amd64')!
  const arm = app.manifests.find((m) => m.platform?.architecture === 'arm64')!
  const connected = await tempDir(t, 'connected')

  const first = await runCli([
    'preload',
    ...flags(fake, connected),
    '--platform',
    'linux/amd64',
    '--progress',
    'plain',
    'app:1',
    'docker.io/team/tool:2.0',
  ])
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /preload: 2 images \(2 done, 0 failed\)/)
  t.match(first.stdout, /ok {6}docker\.io\/library\/app:1 sha256:/)
  t.match(
    first.stderr,
    new RegExp(`blob ${amd.layers[1]!.digest} 1\\.1 MiB fetched \\(docker.io/library/app:1\\)`),
    'plain mode: a line per blob',
  )
  t.match(first.stderr, /image docker\.io\/team\/tool:2\.0 done: 2 blobs/, 'and per image')
  for (const b of [...arm.layers, arm.config])
    t.equal(fake.count({ path: new RegExp(b.digest.slice(7)) }), 0, 'the other platform is not fetched')

  fake.reset()
  const again = await runCli(['preload', ...flags(fake, connected), '--platform', 'linux/amd64', '--progress', 'none', 'app:1'])
  t.equal(again.code, 0)
  t.match(again.stdout, /0 B fetched, 1\.4 MiB already cached/, 'a rerun fetches nothing')
  t.equal(fake.count({ server: 'cdn' }), 0)

  const archive = join(connected, 'images.tar')
  const missing = await runCli(['export', ...flags(fake, connected), '--out', archive, 'app:1'])
  t.equal(missing.code, 1, 'without --platform the arm64 manifest is missing')
  t.match(missing.stderr, new RegExp(`manifest ${arm.digest} is not in the cache`))
  t.notOk(existsSync(archive), 'nothing written')

  const exported = await runCli([
    'export',
    ...flags(fake, connected),
    '--out',
    archive,
    '--platform',
    'linux/amd64',
    '--progress',
    'none',
    'app:1',
    'docker.io/team/tool:2.0',
  ])
  t.equal(exported.code, 0, exported.stderr)
  t.match(exported.stdout, /export: 2 images, 8 blobs/)
  const entries = await tarEntries(archive)
  t.same(JSON.parse(entries.get('oci-layout')!.toString()), { imageLayoutVersion: '1.0.0' })
  const index = JSON.parse(entries.get('index.json')!.toString()) as {
    manifests: { digest: string; annotations: Record<string, string> }[]
  }
  t.same(
    index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]),
    [
      ['docker.io/library/app:1', app.digest],
      ['docker.io/team/tool:2.0', tool.digest],
    ],
    'index.json names each image by its full reference, with the upstream digest',
  )
  for (const [name, body] of entries) {
    if (name.startsWith('blobs/sha256/') && body.length > 0) t.equal(sha256(body), `sha256:${name.slice(13)}`, `${name} is its digest`)
  }
  t.notOk(entries.has(`blobs/sha256/${arm.digest.slice(7)}`), 'the arm64 manifest is not in the archive')

  // The closed side: an upstream that does not exist, and offline.
  const closed = await tempDir(t, 'closed')
  const imported = await runCli(['import', '--data', closed, ...CLOSED, '--offline', '--progress', 'plain', archive])
  t.equal(imported.code, 0, imported.stdout + imported.stderr)
  t.match(imported.stdout, /import: 2 images imported, 0 failed; 8 blobs stored/)
  t.match(imported.stdout, /ok {6}docker\.io\/library\/app:1 .* \(1 manifest of the index not in the archive\)/)
  const mirror = await startMirror(t, closedConfig, { dataDir: closed })
  const tag = await get(`${mirror.url}/v2/app/manifests/1`, { accept: ACCEPT })
  t.equal(tag.status, 200)
  t.equal(tag.headers.get('docker-content-digest'), app.digest, 'the tag resolves to the upstream index digest')
  const m = await get(`${mirror.url}/v2/app/manifests/${amd.digest}`, { accept: ACCEPT })
  t.equal(sha256(m.body), amd.digest)
  for (const b of [amd.config, ...amd.layers]) {
    const blob = await get(`${mirror.url}/v2/app/blobs/${b.digest}`)
    t.equal(sha256(blob.body), b.digest, 'the layer is served offline')
  }
  const other = await get(`${mirror.url}/v2/app/manifests/${arm.digest}`, { accept: ACCEPT })
  t.equal(other.status, 404, 'the platform left out is unknown')
  t.equal(errorCode(other.body), 'MANIFEST_UNKNOWN')
  t.equal((await get(`${mirror.url}/v2/team/tool/manifests/2.0`, { accept: ACCEPT })).headers.get('docker-content-digest'), tool.digest)
  t.same((await verifyDataDir(closed)).problems, [], 'the imported cache verifies clean')
})

t.test('a flipped byte in a layer: import names it and exits 1, nothing corrupt is kept, the other image imports', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const a = fake.addImage('library/a', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [200_000] })
  const b = fake.addImage('library/b', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100_000] })
  const connected = await tempDir(t, 'src')
  t.equal((await runCli(['preload', ...flags(fake, connected), '--progress', 'none', 'a:1', 'b:1'])).code, 0)
  const archive = join(connected, 'x.tar')
  t.equal((await runCli(['export', ...flags(fake, connected), '-o', archive, '--progress', 'none', 'a:1', 'b:1'])).code, 0)
  const layer = a.manifests[0]!.layers[0]!
  const bytes = await readFile(archive)
  const at = bytes.indexOf(layer.bytes.subarray(1000, 1032))
  t.ok(at > 0, 'the layer is in the archive')
  bytes[at + 5] = bytes[at + 5]! ^ 0x01
  await writeFile(archive, bytes)

  const closed = await tempDir(t, 'dst')
  const r = await runCli(['import', '--data', closed, ...CLOSED, '--progress', 'plain', archive])
  t.equal(r.code, 1, 'exit 1')
  t.match(
    r.stdout,
    new RegExp(`FAILED  docker.io/library/a:1: blob ${layer.digest} is damaged in the archive: its bytes hash to sha256:`),
    'names the image and the digest',
  )
  t.match(r.stdout, new RegExp(`REFUSED blob ${layer.digest}`))
  t.match(r.stdout, /ok {6}docker\.io\/library\/b:1/, 'the whole image was imported')
  t.equal((await runCli(['verify', '--data', closed])).code, 0, 'verify finds the cache clean')
  t.notOk(existsSync(join(closed, 'blobs', 'sha256', layer.digest.slice(7, 9), layer.digest.slice(7))), 'the damaged layer is not kept')
  const mirror = await startMirror(t, closedConfig, { dataDir: closed })
  t.equal((await get(`${mirror.url}/v2/a/manifests/1`, { accept: ACCEPT })).status, 404, 'no tag for the damaged image')
  t.equal((await get(`${mirror.url}/v2/b/manifests/1`, { accept: ACCEPT })).headers.get('docker-content-digest'), b.digest)
})

t.test('import into the data directory of a running mirror: served without a restart, pins listed', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/live', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [80_000] })
  const src = await tempDir(t, 'live-src')
  t.equal((await runCli(['preload', ...flags(fake, src), '--progress', 'none', 'live:1'])).code, 0)
  const archive = join(src, 'live.tar')
  t.equal((await runCli(['export', ...flags(fake, src), '-o', archive, '--progress', 'none', 'live:1'])).code, 0)

  const dst = await tempDir(t, 'live-dst')
  const cfg = { ...closedConfig, server: { reloadInterval: '100ms' } }
  const mirror = await startMirror(t, cfg, { dataDir: dst })
  t.equal((await get(`${mirror.url}/v2/live/manifests/1`, { accept: ACCEPT })).status, 404, 'not there before the import')
  const r = await runCli(['import', '--data', dst, ...CLOSED, '--pin', '--progress', 'none', archive])
  t.equal(r.code, 0, r.stdout + r.stderr)
  const tag = await get(`${mirror.url}/v2/live/manifests/1`, { accept: ACCEPT })
  t.equal(tag.headers.get('docker-content-digest'), img.digest, 'the running mirror serves the imported tag')
  const layer = img.manifests[0]!.layers[0]!
  t.equal(sha256((await get(`${mirror.url}/v2/live/blobs/${layer.digest}`)).body), layer.digest, 'and its blobs')
  const pins = await runCli(['pins', '--data', dst, ...CLOSED])
  t.match(pins.stdout, new RegExp(`docker.io/library/live:1\\tdata dir\\t${img.digest} 3 cached`), 'regmirror pins lists the pin')
  // The running mirror reads the pin file again within its reload interval.
  await t.resolveMatch(
    (async () => {
      for (let i = 0; i < 50 && !mirror.app.services.index.isPinned(layer.digest); i++) await new Promise((r) => setTimeout(r, 50))
      return mirror.app.services.index.isPinned(layer.digest)
    })(),
    true,
    'the running mirror keeps the pinned layer from eviction',
  )
  const removed = await runCli(['pins', 'remove', 'docker.io/library/live:1', '--data', dst, ...CLOSED])
  t.equal(removed.code, 0)
  t.match(removed.stdout, /unpinned docker\.io\/library\/live:1/)
})
