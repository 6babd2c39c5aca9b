/**
 * The Docker daemon, configured as the README says (`"registry-mirrors"` in daemon.json), pulling a Docker Hub
 * style name (`e2edocker:v1`, so `docker.io/library/e2edocker`) through regmirror from a token-auth distribution
 * standing in for Docker Hub. The daemon sends plain `/v2/library/...` paths: the mirror's default upstream and the
 * `library/` rule must apply. There is no Docker Hub here, so had the mirror failed the pull would have failed too
 * (the daemon's fallback, registry-1.docker.io, is unreachable).
 */
import t from 'tap'
import { join } from 'node:path'
import { startMirror } from '../helpers/mirror.js'
import { clientConfigs, parseMirrorUrl } from '../../src/clients/client-config.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { AMD64_ARM64, buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout } from '../helpers/skopeo.js'
import { startDockerd } from '../helpers/dockerd.js'
import { blobGets } from '../helpers/verify.js'

if (requirePrograms(t, ['dockerd', 'docker', 'docker-registry', 'skopeo', 'openssl'])) {
  t.test('docker pull through registry-mirrors (right platform, then from the cache) and through the path prefix', async (t) => {
    const work = await makeTempDir('docker')
    t.teardown(() => removeTempDir(work))
    const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const app = await buildOciLayout(join(work, 'app'), {
      tag: 'v1',
      layerSizes: [3 * 1024 * 1024, 256 * 1024],
      platforms: AMD64_ARM64,
    })
    await pushLayout(app.layoutDir, 'v1', hub.hostPort, 'library/e2edocker', { destCreds: 'pusher:secret' })
    // A second registry, reached by the path-prefix convention (README: "For other registries").
    const ghcr = await startDistribution({ auth: 'none', t })
    const other = await buildOciLayout(join(work, 'other'), { tag: '1.0', layerSizes: [512 * 1024] })
    await pushLayout(other.layoutDir, '1.0', ghcr.hostPort, 'owner/app')
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'ghcr.io', url: ghcr.url },
      ],
      tagTtl: '1h',
    })
    const mirrorHost = new URL(mirror.url).host
    // The daemon.json `regmirror client-config --docker` prints for this mirror (the README's, with this address).
    const generated = clientConfigs(mirror.app.services.config, parseMirrorUrl(mirror.url), ['docker']).configs[0]!.files[0]!
    const daemonJson = JSON.parse(generated.text) as Record<string, unknown>
    t.same(daemonJson, { 'registry-mirrors': [mirror.url], 'insecure-registries': [mirrorHost] })
    const daemon = await startDockerd({ t, daemonJson })
    const amd64 = app.images.find((i) => i.platform.architecture === 'amd64')!
    const arm64 = app.images.find((i) => i.platform.architecture === 'arm64')!

    await daemon.docker(['pull', '--platform', 'linux/amd64', 'e2edocker:v1'])
    const inspect = async () => {
      const out = (await daemon.docker(['image', 'inspect', '--format', '{{.Id}} {{json .RepoDigests}}', 'e2edocker:v1'])).stdout.trim()
      const [id, digests] = out.split(' ', 2) as [string, string]
      return { id, repoDigests: JSON.parse(digests) as string[] }
    }
    let image = await inspect()
    // The daemon checks every layer against its digest and the unpacked layers against the config's diff_ids.
    t.equal(image.id, amd64.configDigest, 'the image ID is the amd64 config digest')
    t.same(image.repoDigests, [`e2edocker@${app.indexDigest}`], 'pulled by the index the tag names')
    t.equal(blobGets(hub.requests(), amd64.layerDigests).length, amd64.layerDigests.length, 'each amd64 layer came from upstream once')
    t.same(blobGets(hub.requests(), arm64.layerDigests), [], 'no arm64 layer was fetched')
    const seen = mirror.logs.filter((l) => l.includes('"msg":"request"') && l.includes('/v2/library/e2edocker/'))
    t.ok(seen.length >= 2 + amd64.layerDigests.length, `the daemon's requests reached the mirror (${seen.length})`)

    // Warm: the image removed from the daemon, pulled again: nothing goes upstream but a tag check is not due (1h).
    await daemon.docker(['image', 'rm', 'e2edocker:v1'])
    const mark = hub.requests().length
    await daemon.docker(['pull', '--platform', 'linux/amd64', 'e2edocker:v1'])
    image = await inspect()
    t.equal(image.id, amd64.configDigest, 'the same image again')
    t.same(
      hub
        .requests()
        .slice(mark)
        .map((r) => `${r.method} ${r.path}`),
      [],
      'served entirely from the cache',
    )

    // Another registry through the path prefix: `docker pull MIRROR/ghcr.io/owner/app:1.0`.
    await daemon.docker(['pull', `${mirrorHost}/ghcr.io/owner/app:1.0`])
    const id = (await daemon.docker(['image', 'inspect', '--format', '{{.Id}}', `${mirrorHost}/ghcr.io/owner/app:1.0`])).stdout.trim()
    t.equal(id, other.configDigests[0], 'the ghcr.io image, by its config digest')
    t.equal(blobGets(ghcr.requests(), other.layerDigests).length, other.layerDigests.length, 'its layers came from the ghcr.io upstream')
    t.same(blobGets(hub.requests(), other.layerDigests), [], 'and not from docker.io')
  })
}
