/**
 * podman and CRI-O find mirrors in registries.conf through containers/image, as skopeo does: a mirror location with
 * a path (`mirror:5000/ghcr.io`) makes every request `/v2/ghcr.io/<repo>/...`, the path-prefix convention. This runs
 * the real skopeo with the registries.conf snippet the README gives, against two fake upstreams holding the same
 * repository name with different content.
 */
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { skopeoInspect } from '../helpers/skopeo.js'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startMirror } from '../helpers/mirror.js'

if (requirePrograms(t, ['skopeo'])) {
  t.test('registries.conf mirrors with a registry path prefix reach the right upstream', async (t) => {
    const work = await makeTempDir('registries-conf')
    t.teardown(() => removeTempDir(work))
    const hub = await startFakeRegistry()
    t.teardown(() => hub.close())
    const ghcr = await startFakeRegistry()
    t.teardown(() => ghcr.close())
    const platforms = [{ os: 'linux', architecture: 'amd64' }]
    const onHub = hub.addImage('library/app', '1', { platforms })
    const onGhcr = ghcr.addImage('owner/app', '1', { platforms })
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'ghcr.io', url: ghcr.url },
      ],
    })
    const mirrorHost = new URL(mirror.url).host
    // The README snippet, except that `location` is a closed port: should the mirror fail, containers/image falls
    // back to the location, and a test must not reach the real ghcr.io or Docker Hub.
    const conf = join(work, 'registries.conf')
    const entry = (registry: string) =>
      [
        '[[registry]]',
        `prefix = "${registry}"`,
        'location = "127.0.0.1:9"',
        '',
        '[[registry.mirror]]',
        `location = "${mirrorHost}/${registry}"`,
        'insecure = true',
        '',
      ].join('\n')
    await writeFile(conf, ['unqualified-search-registries = []', '', entry('docker.io'), entry('ghcr.io')].join('\n'))

    const cases = [
      ['docker.io/library/app:1', onHub.digest, hub],
      ['ghcr.io/owner/app:1', onGhcr.digest, ghcr],
    ] as const
    for (const [ref, digest, upstream] of cases) {
      const r = await skopeoInspect(`docker://${ref}`, { raw: true, extraArgs: ['--registries-conf', conf] })
      t.equal(sha256(r.stdout), digest, `${ref}: the upstream's own manifest`)
      t.ok(upstream.count({ server: 'registry', path: /\/manifests\/1$/ }) >= 1, `${ref}: asked of its upstream`)
    }
    const paths = mirror.logs
      .map((l) => JSON.parse(l) as { msg?: string; path?: string; upstream?: string })
      .filter((l) => l.msg === 'request' && l.path !== '/v2/')
    t.ok(
      paths.some((l) => l.path === '/v2/docker.io/library/app/manifests/1' && l.upstream === 'docker.io'),
      'docker.io by path prefix',
    )
    t.ok(
      paths.some((l) => l.path === '/v2/ghcr.io/owner/app/manifests/1' && l.upstream === 'ghcr.io'),
      'ghcr.io by path prefix',
    )
    t.equal(hub.count({ path: /owner/ }), 0, 'nothing of ghcr.io was asked of docker.io')
    t.equal(ghcr.count({ path: /library/ }), 0, 'nothing of docker.io was asked of ghcr.io')
  })
}
