/**
 * Private content stays private, against real registries: a CNCF distribution with htpasswd auth is a private
 * upstream (the mirror has its credentials), a token-auth distribution stands in for Docker Hub and a plain one for
 * another public registry. After skopeo pulls a private image through the mirror, none of its blobs or manifests is
 * served through any other upstream or repository, by any path a client can use (prefix, ?ns=, default upstream;
 * HEAD and GET), while a public image's layers are still shared by digest between public upstreams.
 */
import { join } from 'node:path'
import t from 'tap'
import { startDistribution } from '../helpers/distribution.js'
import { get, startMirror } from '../helpers/mirror.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { ACCEPT_ALL_MANIFESTS } from '../helpers/oci-http.js'
import { requirePrograms } from '../helpers/programs.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { readPulledOciLayout } from '../helpers/verify.js'
import { sha256 } from '../helpers/oci-fixtures.js'

if (requirePrograms(t, ['docker-registry', 'skopeo', 'openssl'])) {
  t.test('a private upstream content is served only through it, for the repository that holds it', async (t) => {
    const work = await makeTempDir('private')
    t.teardown(() => removeTempDir(work))
    const priv = await startDistribution({ auth: 'htpasswd', users: { robot: 'robot-pw' }, t })
    const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const other = await startDistribution({ auth: 'none', t })
    const secret = await buildOciLayout(join(work, 'secret'), { tag: 'v1', layerSizes: [256 * 1024, 64 * 1024] })
    await pushLayout(secret.layoutDir, 'v1', priv.hostPort, 'team/secret', { destCreds: 'robot:robot-pw' })
    const neighbour = await buildOciLayout(join(work, 'neighbour'), { tag: 'v1', layerSizes: [1024] })
    await pushLayout(neighbour.layoutDir, 'v1', priv.hostPort, 'team/neighbour', { destCreds: 'robot:robot-pw' })
    const pub = await buildOciLayout(join(work, 'pub'), { tag: 'v1', layerSizes: [128 * 1024] })
    await pushLayout(pub.layoutDir, 'v1', hub.hostPort, 'library/pub', { destCreds: 'pusher:secret' })
    await pushLayout(pub.layoutDir, 'v1', other.hostPort, 'mirror/pub')
    const mirror = await startMirror(t, {
      defaultUpstream: 'docker.io',
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'quay.io', url: other.url },
        { name: 'registry.internal', url: priv.url, credentials: { username: 'robot', password: 'robot-pw' } },
      ],
    })
    const host = new URL(mirror.url).host

    const dest = join(work, 'pulled')
    await skopeoCopy(`docker://${host}/registry.internal/team/secret:v1`, `oci:${dest}:v1`, { preserveDigests: true })
    const pulled = await readPulledOciLayout(dest)
    t.equal(pulled.topDigest, secret.digest, 'the private image pulled through the mirror')
    t.same(pulled.corrupt, [])

    const digests = { blobs: [...secret.layerDigests, ...secret.configDigests], manifest: secret.digest }
    const prefixes = ['/v2/team/secret', '/v2/docker.io/team/secret', '/v2/quay.io/team/secret', '/v2/registry.internal/team/neighbour']
    const queries = ['', '?ns=docker.io', '?ns=quay.io']
    let tried = 0
    for (const prefix of prefixes) {
      for (const q of prefix.includes('registry.internal') ? [''] : queries) {
        for (const method of ['GET', 'HEAD']) {
          for (const d of digests.blobs) {
            const r = await get(`${mirror.url}${prefix}/blobs/${d}${q}`, {}, method)
            t.not(r.status, 200, `${method} ${prefix}/blobs/${d.slice(7, 19)}${q}: ${r.status}`)
            t.not(sha256(r.body), d, 'not the private bytes')
            tried++
          }
          const m = await get(`${mirror.url}${prefix}/manifests/${digests.manifest}${q}`, { accept: ACCEPT_ALL_MANIFESTS }, method)
          t.not(m.status, 200, `${method} ${prefix}/manifests/${digests.manifest.slice(7, 19)}${q}: ${m.status}`)
          tried++
        }
      }
    }
    t.comment(`${tried} requests for private content by other paths, none served`)

    // Through its own repository it is served from the cache.
    for (const d of digests.blobs) {
      const r = await get(`${mirror.url}/v2/registry.internal/team/secret/blobs/${d}`)
      t.equal(sha256(r.body), d)
      t.equal(r.headers.get('x-regmirror-cache'), 'hit')
    }

    // Public content: pulled through docker.io, then shared by digest with quay.io, which has the same layers.
    await skopeoCopy(`docker://${host}/library/pub:v1`, `oci:${join(work, 'pub-pulled')}:v1`, { preserveDigests: true })
    const mark = other.requests().length
    for (const d of pub.layerDigests) {
      const r = await get(`${mirror.url}/v2/quay.io/mirror/pub/blobs/${d}`)
      t.equal(sha256(r.body), d)
      t.equal(r.headers.get('x-regmirror-cache'), 'hit', 'a public layer is shared between public upstreams')
    }
    t.same(
      other
        .requests()
        .slice(mark)
        .filter((r) => r.method === 'GET'),
      [],
      'without a download',
    )
  })
}
