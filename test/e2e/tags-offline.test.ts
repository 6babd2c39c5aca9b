/**
 * Tags over time against a real token-auth distribution: a tag moved upstream is seen once its TTL is over (and
 * not before), and with the upstream stopped, cached tags and blobs still pull (stale-if-error).
 */
import t from 'tap'
import { join } from 'node:path'
import { get, startMirror } from '../helpers/mirror.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { AMD64_ARM64, buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout, skopeoCopy, skopeoInspect } from '../helpers/skopeo.js'
import { readPulledOciLayout } from '../helpers/verify.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_ALL_MANIFESTS } from '../helpers/oci-http.js'

const TAG_TTL_MS = 1000
const PLATFORMS = AMD64_ARM64

if (requirePrograms(t, ['docker-registry', 'skopeo', 'openssl'])) {
  t.test('a moved tag is seen after its TTL; with the upstream stopped, cached tags and blobs still pull', async (t) => {
    const work = await makeTempDir('tags')
    t.teardown(() => removeTempDir(work))
    const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const [first, second] = await Promise.all([
      buildOciLayout(join(work, 'first'), { tag: 'v1', layerSizes: [1024 * 1024, 300 * 1024], platforms: PLATFORMS }),
      buildOciLayout(join(work, 'second'), { tag: 'v1', layerSizes: [1024 * 1024, 300 * 1024], platforms: PLATFORMS }),
    ])
    const push = (layoutDir: string, tag: string) =>
      skopeoCopy(`oci:${layoutDir}:v1`, `docker://${hub.hostPort}/e2e/moving:${tag}`, {
        all: true,
        preserveDigests: true,
        destCreds: 'pusher:secret',
      })
    await pushLayout(first.layoutDir, 'v1', hub.hostPort, 'e2e/moving', { destCreds: 'pusher:secret' })
    await push(first.layoutDir, 'stable')

    const mirror = await startMirror(t, {
      // A long TTL for one tag shows the short one is what makes the other move.
      upstreams: [{ name: 'docker.io', url: hub.url, tagTtlRules: [{ pattern: 'stable', ttl: '1h' }] }],
      tagTtl: `${TAG_TTL_MS}ms`,
      retries: { attempts: 1 },
    })
    const host = new URL(mirror.url).host
    const inspect = async (tag: string) => sha256((await skopeoInspect(`docker://${host}/e2e/moving:${tag}`, { raw: true })).stdout)

    t.equal(await inspect('v1'), first.indexDigest, 'v1 resolves to the first image')
    t.equal(await inspect('stable'), first.indexDigest, 'stable too')

    // Move both tags upstream.
    await pushLayout(second.layoutDir, 'v1', hub.hostPort, 'e2e/moving', { destCreds: 'pusher:secret' })
    await push(second.layoutDir, 'stable')
    await sleep(TAG_TTL_MS + 300)

    const mark = hub.requests().length
    t.equal(await inspect('v1'), second.indexDigest, 'after its TTL, v1 is the moved tag')
    const revalidation = hub.requests().slice(mark)
    t.ok(
      revalidation.some((r) => r.method === 'HEAD' && r.path === '/v2/e2e/moving/manifests/v1' && r.status === 200),
      'the mirror revalidated the tag with a HEAD',
    )
    t.ok(
      revalidation.some((r) => r.method === 'GET' && r.path === `/v2/e2e/moving/manifests/${second.indexDigest}`),
      'and fetched the new index by digest',
    )
    t.equal(await inspect('stable'), first.indexDigest, 'stable, within its own TTL, still serves what it served')
    t.same(
      hub
        .requests()
        .slice(mark)
        .filter((r) => r.path === '/v2/e2e/moving/manifests/stable'),
      [],
      'without asking upstream',
    )

    // Pull the whole moved image so every blob is cached, then take the upstream away.
    await skopeoCopy(`docker://${host}/e2e/moving:v1`, `oci:${join(work, 'online')}:v1`, { all: true, preserveDigests: true })
    await hub.stop()
    await sleep(TAG_TTL_MS + 300)

    const tag = await get(`${mirror.url}/v2/e2e/moving/manifests/v1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(tag.status, 200, 'the expired tag is served with the upstream down')
    t.equal(tag.headers.get('x-regmirror-cache'), 'stale')
    t.match(tag.headers.get('warning') ?? '', /^110 /, 'and says it is stale')
    t.equal(sha256(tag.body), second.indexDigest)

    const dest = join(work, 'offline')
    await skopeoCopy(`docker://${host}/e2e/moving:v1`, `oci:${dest}:v1`, { all: true, preserveDigests: true })
    const pulled = await readPulledOciLayout(dest)
    t.equal(pulled.topDigest, second.indexDigest, 'skopeo pulls the whole image offline')
    t.same(pulled.corrupt, [])
    t.same(
      pulled.blobDigests,
      [second.indexDigest!, ...second.manifestDigests, ...second.blobDigests].sort(),
      'every digest of the moved image',
    )

    const unknown = await get(`${mirror.url}/v2/e2e/never-pulled/manifests/v1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.not(unknown.status, 200, 'a tag never pulled cannot be served offline')
    t.ok(unknown.status >= 500, `and fails as an upstream problem (${unknown.status}), not as a missing image`)
  })
}
