import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { verifyDataDir } from '../../src/cache/verify.js'
import { runCli } from '../helpers/cli.js'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_OCI_MANIFESTS } from '../helpers/oci-http.js'

const blobPath = (dir: string, digest: string) => join(dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7))

const cli = (args: string[]) => runCli(args)

t.test('regmirror verify finds corrupt and orphaned entries and --repair removes them', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const one = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [50_000] }
  const a = fake.addImage('library/a', '1', one)
  const b = fake.addImage('library/b', '1', one)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  for (const img of [a, b]) {
    t.equal((await get(`${mirror.url}/v2/${img.repo.replace('library/', '')}/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })).status, 200)
    for (const blob of img.blobs)
      t.equal((await get(`${mirror.url}/v2/${img.repo.replace('library/', '')}/blobs/${blob.digest}`)).status, 200)
  }
  await mirror.close()
  const dir = mirror.dataDir

  const clean = await cli(['verify', '--data', dir])
  t.equal(clean.code, 0, 'a healthy cache verifies')
  t.match(clean.stdout, /^verify: \d+ files .* no problems\n$/)
  t.equal(clean.stderr, '', 'no progress display when stderr is not a terminal')

  // A layer of image a with one byte flipped.
  const layer = a.blobs.find((x) => x.size === 50_000)!
  const bytes = await readFile(blobPath(dir, layer.digest))
  bytes[100] = bytes[100]! ^ 0xff
  await writeFile(blobPath(dir, layer.digest), bytes)
  // Image b's manifest deleted: its tag link now points at nothing.
  await unlink(blobPath(dir, b.digest))
  // Leftovers of a crash: a temp download, a half-written link, a media-type record without content.
  await writeFile(join(dir, 'tmp', `${'1'.repeat(64)}.abc.tmp`), 'partial')
  const tagDir = join(dir, 'repositories', 'docker.io', 'library', 'a', '_tags')
  await writeFile(join(tagDir, '1.deadbeef.tmp'), '{')
  await mkdir(join(dir, 'manifest-types', '22'), { recursive: true })
  await writeFile(join(dir, 'manifest-types', '22', '2'.repeat(64)), '{"mediaType":"x","size":1}')

  const found = await cli(['verify', '--data', dir])
  t.equal(found.code, 1, 'problems: exit code 1')
  t.match(found.stdout, new RegExp(`corrupt-blob blobs/sha256/${layer.digest.slice(7, 9)}/${layer.digest.slice(7)}`))
  t.match(found.stdout, /orphaned-tag repositories\/docker\.io\/library\/b\/_tags\/1/)
  t.match(found.stdout, /temp-file tmp\/1+\.abc\.tmp/)
  t.match(found.stdout, /temp-file repositories\/docker\.io\/library\/a\/_tags\/1\.deadbeef\.tmp/)
  t.match(found.stdout, /orphaned-manifest-type manifest-types\/22\/2+/)
  t.match(found.stdout, /orphaned-manifest-type manifest-types\/.*/, "b's media-type record lost its content too")
  t.match(found.stdout, /\nverify: .*1 corrupt-blob.*\n$/, 'one summary line at the end')
  t.ok(await readFile(blobPath(dir, layer.digest)), 'without --repair nothing is removed')

  const repaired = await cli(['verify', '--data', dir, '--repair'])
  t.equal(repaired.code, 0, 'everything repaired: exit code 0')
  t.match(repaired.stdout, /\(removed\)/)
  t.match(repaired.stdout, /0 remaining\n$/)
  t.same(await readdir(join(dir, 'tmp')), [])
  const again = await verifyDataDir(dir)
  t.same(again.problems, [], 'a second pass finds nothing')

  // The repaired cache serves again: the corrupt layer is fetched anew, b's tag resolves upstream.
  const m2 = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] }, { dataDir: dir })
  fake.reset()
  const l = await get(`${m2.url}/v2/a/blobs/${layer.digest}`)
  t.equal(sha256(l.body), layer.digest)
  t.equal(l.headers.get('x-regmirror-cache'), 'miss', 'the corrupt copy was not served')
  const tb = await get(`${m2.url}/v2/b/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(tb.status, 200)
  t.equal(sha256(tb.body), b.digest)
})

t.test('ordinary LRU eviction leaves nothing verify calls a problem', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const one = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [400_000] }
  const imgs = ['a', 'b', 'c', 'd', 'e'].map((r) => fake.addImage(`library/${r}`, '1', one))
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], cache: { maxSize: '1MiB' } })
  for (const img of imgs) {
    const name = img.repo.replace('library/', '')
    t.equal((await get(`${mirror.url}/v2/${name}/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })).status, 200)
    for (const blob of img.blobs) t.equal((await get(`${mirror.url}/v2/${name}/blobs/${blob.digest}`)).status, 200)
  }
  t.match(
    (await get(`${mirror.url}/metrics`)).body.toString(),
    /regmirror_cache_evictions_total [1-9]/,
    'manifests and layers were evicted',
  )
  const evicted = imgs.filter((img) => !existsSync(blobPath(mirror.dataDir, img.digest)))
  t.ok(evicted.length > 0, 'some tags now point at an evicted manifest')
  await mirror.close()
  const r = await cli(['verify', '--data', mirror.dataDir])
  t.equal(r.code, 0, r.stdout)
  t.match(r.stdout, /no problems/)

  // And the evicted tags still work: their manifests are fetched again by digest.
  const m2 = await startMirror(
    t,
    { upstreams: [{ name: 'docker.io', url: fake.url }], cache: { maxSize: '1MiB' } },
    { dataDir: mirror.dataDir },
  )
  const again = await get(`${m2.url}/v2/${evicted[0]!.repo.replace('library/', '')}/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(sha256(again.body), evicted[0]!.digest)
})
