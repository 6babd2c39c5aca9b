/**
 * containerd's hosts.toml mirrors add `?ns=<registry>` to every request: one regmirror endpoint serves
 * docker.io and ghcr.io images to a real `ctr content fetch`, each from its own upstream (two CNCF
 * distribution servers, the docker.io one with Docker Hub-style token auth).
 */
import t from 'tap'
import { join } from 'node:path'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout } from '../helpers/skopeo.js'
import { startContainerd, writeHostsToml } from '../helpers/containerd.js'
import { startMirror } from '../helpers/mirror.js'

if (requirePrograms(t, ['docker-registry', 'skopeo', 'containerd', 'ctr', 'openssl'])) {
  t.test('ctr pulls docker.io and ghcr.io images through regmirror via ?ns=', async (t) => {
    const work = await makeTempDir('ctr-ns')
    t.teardown(() => removeTempDir(work))
    const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const tokens = hub.tokenServer!
    const ghcr = await startDistribution({ auth: 'none', t })

    const hubImage = await buildOciLayout(join(work, 'hub'), { tag: 'v1', layerSizes: [512 * 1024] })
    const ghcrImage = await buildOciLayout(join(work, 'ghcr'), { tag: 'v1', layerSizes: [512 * 1024] })
    // The same repository name on both registries, different content: they must never mix.
    await pushLayout(hubImage.layoutDir, 'v1', hub.hostPort, 'library/app', { destCreds: 'pusher:secret' })
    await pushLayout(ghcrImage.layoutDir, 'v1', ghcr.hostPort, 'library/app')

    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'ghcr.io', url: ghcr.url },
        // Reached through the catch-all `_default` hosts.toml; served by the same distribution as ghcr.io.
        { name: 'quay.io', url: ghcr.url },
      ],
    })
    const hostsDir = join(work, 'certs.d')
    await writeHostsToml(hostsDir, 'docker.io', mirror.url)
    await writeHostsToml(hostsDir, 'ghcr.io', mirror.url, { server: 'https://ghcr.io' })
    await writeHostsToml(hostsDir, '_default', mirror.url, { server: null })
    const containerd = await startContainerd({ t })
    const hubBefore = hub.requests().length
    const ghcrBefore = ghcr.requests().length

    await containerd.ctr(['content', 'fetch', 'docker.io/library/app:v1'], { hostsDir })
    await containerd.ctr(['content', 'fetch', 'ghcr.io/library/app:v1'], { hostsDir })
    const listed = (await containerd.ctr(['content', 'ls', '-q'])).stdout.split('\n').filter((l) => l !== '')
    for (const [what, img] of [
      ['docker.io', hubImage],
      ['ghcr.io', ghcrImage],
    ] as const) {
      for (const d of [img.digest, ...img.blobDigests]) t.ok(listed.includes(d), `${what}: containerd has ${d.slice(0, 19)}`)
    }

    const hubSaw = hub.requests().slice(hubBefore)
    const ghcrSaw = ghcr.requests().slice(ghcrBefore)
    for (const d of hubImage.blobDigests)
      t.ok(
        hubSaw.some((r) => r.path.endsWith(d)),
        'docker.io blobs came from the docker.io upstream',
      )
    for (const d of ghcrImage.blobDigests)
      t.ok(
        ghcrSaw.some((r) => r.path.endsWith(d)),
        'ghcr.io blobs came from the ghcr.io upstream',
      )
    for (const d of ghcrImage.blobDigests)
      t.notOk(
        hubSaw.some((r) => r.path.endsWith(d)),
        'nothing of ghcr.io was asked of docker.io',
      )
    for (const d of hubImage.blobDigests)
      t.notOk(
        ghcrSaw.some((r) => r.path.endsWith(d)),
        'nothing of docker.io was asked of ghcr.io',
      )
    t.ok(tokens.tokensIssued() >= 1, 'the docker.io upstream was reached through its token flow')

    // What ctr actually sent: every registry request carries ?ns=<registry of the reference>, with the
    // repository unprefixed (so the mirror, not a path convention, chose the upstream).
    const seen = mirror.logs
      .map((l) => JSON.parse(l) as { msg?: string; path?: string; upstream?: string; status?: number })
      .filter((l) => l.msg === 'request' && l.path?.startsWith('/v2/library/app/'))
    t.ok(seen.length >= 6, 'the mirror logged the pulls')
    for (const l of seen) {
      const ns = new URL(l.path!, 'http://x').searchParams.get('ns')
      t.ok(ns === 'docker.io' || ns === 'ghcr.io', `${l.path!.slice(0, 40)}…: carries ?ns=`)
      t.equal(l.upstream, ns, `${l.path!.slice(0, 40)}…: routed by ns`)
    }
    t.ok(seen.some((l) => l.path!.includes('ns=ghcr.io')) && seen.some((l) => l.path!.includes('ns=docker.io')), 'both namespaces seen')

    // One `_default/hosts.toml` serves every registry without a directory of its own.
    await containerd.ctr(['content', 'fetch', 'quay.io/library/app:v1'], { hostsDir })
    const quay = mirror.logs
      .map((l) => JSON.parse(l) as { msg?: string; path?: string; upstream?: string; status?: number })
      .filter((l) => l.msg === 'request' && l.upstream === 'quay.io')
    t.ok(
      quay.some((l) => l.path === '/v2/library/app/manifests/v1?ns=quay.io' && l.status === 200),
      'the _default mirror got ?ns=quay.io',
    )

    // A second containerd (empty content store) pulls both again: everything from the mirror's cache.
    const second = await startContainerd({ t, namespace: 'second' })
    const hubMark = hub.requests().length
    const ghcrMark = ghcr.requests().length
    await second.ctr(['content', 'fetch', 'docker.io/library/app:v1'], { hostsDir })
    await second.ctr(['content', 'fetch', 'ghcr.io/library/app:v1'], { hostsDir })
    const blobGets = [...hub.requests().slice(hubMark), ...ghcr.requests().slice(ghcrMark)].filter((r) => r.path.includes('/blobs/'))
    t.equal(blobGets.length, 0, 'the warm pull made no upstream blob requests')
  })
}
