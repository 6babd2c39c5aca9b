/**
 * containerd's `ctr content fetch --hosts-dir` pulling docker.io/... through regmirror configured as a hosts.toml
 * mirror: ctr adds `?ns=docker.io` to every request, and that (not the mirror's default upstream) must pick the
 * token-auth distribution standing in for Docker Hub. containerd verifies each blob against its digest when it
 * commits it to its content store, so a digest listed by `ctr content ls` is a digest that matched.
 */
import t from 'tap'
import { join } from 'node:path'
import { startMirror } from '../helpers/mirror.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { AMD64_ARM64, buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout } from '../helpers/skopeo.js'
import { startContainerd, writeHostsToml } from '../helpers/containerd.js'
import { blobGets } from '../helpers/verify.js'

if (requirePrograms(t, ['docker-registry', 'skopeo', 'containerd', 'ctr', 'openssl'])) {
  t.test('ctr content fetch of docker.io/e2e/app through the mirror, per platform, cold then warm', async (t) => {
    const work = await makeTempDir('ctr')
    t.teardown(() => removeTempDir(work))
    const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    // The mirror's default upstream is another registry that does not have the image: only ?ns=docker.io
    // can send ctr's requests to the right one.
    const other = await startDistribution({ auth: 'none', t })
    const app = await buildOciLayout(join(work, 'app'), {
      tag: 'v1',
      layerSizes: [2 * 1024 * 1024, 512 * 1024],
      platforms: AMD64_ARM64,
    })
    await pushLayout(app.layoutDir, 'v1', hub.hostPort, 'e2e/app', { destCreds: 'pusher:secret' })
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'quay.io', url: other.url },
      ],
      defaultUpstream: 'quay.io',
      tagTtl: '1h',
    })
    const hostsDir = join(work, 'hosts.d')
    // No fallback server: if the mirror failed, ctr must not quietly go elsewhere.
    await writeHostsToml(hostsDir, 'docker.io', mirror.url, { server: null })
    const amd64 = app.images.find((i) => i.platform.architecture === 'amd64')!
    const arm64 = app.images.find((i) => i.platform.architecture === 'arm64')!

    const ctrd = await startContainerd({ t })
    const listed = async () => (await ctrd.ctr(['content', 'ls', '-q'])).stdout.split('\n').filter((l) => l !== '')

    await ctrd.ctr(['content', 'fetch', '--platform', 'linux/arm64', 'docker.io/e2e/app:v1'], { hostsDir })
    let content = await listed()
    for (const d of [app.indexDigest!, arm64.manifestDigest, arm64.configDigest, ...arm64.layerDigests]) {
      t.ok(content.includes(d), `arm64: containerd has ${d.slice(0, 19)}`)
    }
    for (const d of amd64.layerDigests) t.notOk(content.includes(d), 'no amd64 layer for --platform linux/arm64')
    t.same(blobGets(hub.requests(), amd64.layerDigests), [], 'and the mirror fetched none upstream')
    t.equal(blobGets(hub.requests(), arm64.layerDigests).length, arm64.layerDigests.length, 'each arm64 layer came from docker.io once')
    t.same(
      other.requests().filter((r) => r.path.startsWith('/v2/e2e/')),
      [],
      'nothing went to the default upstream',
    )

    await ctrd.ctr(['content', 'fetch', '--platform', 'linux/amd64', 'docker.io/e2e/app:v1'], { hostsDir })
    content = await listed()
    for (const d of [amd64.manifestDigest, amd64.configDigest, ...amd64.layerDigests]) {
      t.ok(content.includes(d), `amd64: containerd has ${d.slice(0, 19)}`)
    }

    // Warm: a second containerd (empty content store) pulls both platforms from the mirror's cache.
    const mark = hub.requests().length
    const warm = await startContainerd({ t, namespace: 'warm' })
    await warm.ctr(['content', 'fetch', '--all-platforms', 'docker.io/e2e/app:v1'], { hostsDir })
    const warmContent = (await warm.ctr(['content', 'ls', '-q'])).stdout.split('\n').filter((l) => l !== '')
    t.same(
      [app.indexDigest!, ...app.manifestDigests, ...app.blobDigests].filter((d) => !warmContent.includes(d)),
      [],
      'every digest of both platforms',
    )
    t.same(
      hub
        .requests()
        .slice(mark)
        .map((r) => `${r.method} ${r.path}`),
      [],
      'served entirely from the cache',
    )
  })
}
