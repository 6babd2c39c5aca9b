/**
 * `docker search MIRROR/term` with a real Docker daemon (issue #15): the daemon pings `/v1/_ping` (HTTPS first, then
 * plain HTTP: 127.0.0.0/8 is an insecure registry by default) and asks `/v1/search`, which the mirror forwards to its
 * search upstream, here a stand-in for Docker Hub's index. With the index gone, the answer is the repositories the
 * mirror holds, marked "cached in this mirror".
 */
import { join } from 'node:path'
import t from 'tap'
import { runProgram } from '../helpers/child-program.js'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startDockerd } from '../helpers/dockerd.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_ALL_MANIFESTS as ACCEPT } from '../helpers/oci-http.js'
import { requirePrograms } from '../helpers/programs.js'
import { startSearchIndex } from '../helpers/search-index.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [1000] }

if (requirePrograms(t, ['dockerd', 'docker', 'htpasswd'])) {
  t.test('docker search through the mirror: the index answers, then, with it down, the cache does', async (t) => {
    const hub = await startFakeRegistry()
    const ghcr = await startFakeRegistry({ auth: 'none' })
    t.teardown(() => Promise.all([hub.close(), ghcr.close()]))
    hub.addImage('library/e2esearch', '1', ONE)
    hub.addImage('someone/e2esearch-tools', '1', ONE)
    ghcr.addImage('owner/e2esearch-app', '1', ONE)
    const index = await startSearchIndex([
      { name: 'e2esearch', description: 'Official e2esearch image', stars: 4321, official: true },
      { name: 'someone/e2esearch-tools', description: 'tools for e2esearch', stars: 7 },
    ])
    t.teardown(() => index.close())
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'ghcr.io', url: ghcr.url },
      ],
      // Kept answers are the integration tests' concern: here every search goes to the index while it is there.
      search: { upstream: index.url, cacheTtl: '0' },
    })
    const mirrorHost = new URL(mirror.url).host
    const daemon = await startDockerd({ t, daemonJson: { 'registry-mirrors': [mirror.url], 'insecure-registries': [mirrorHost] } })
    const search = async (term: string) => {
      const out = await daemon.docker([
        'search',
        '--no-trunc',
        '--format',
        '{{.Name}}|{{.Description}}|{{.StarCount}}|{{.IsOfficial}}',
        `${mirrorHost}/${term}`,
      ])
      return out.stdout
        .trim()
        .split('\n')
        .filter((l) => l !== '')
    }

    t.same(
      await search('e2esearch'),
      ['e2esearch|Official e2esearch image|4321|[OK]', 'someone/e2esearch-tools|tools for e2esearch|7|'],
      "the index's results, as docker search prints them",
    )
    t.same(index.searches, ['e2esearch'], 'the daemon asked through the mirror')
    t.ok(
      mirror.logs.some((l) => l.includes('"path":"/v1/_ping"')) && mirror.logs.some((l) => l.includes('"path":"/v1/search?q=e2esearch')),
      'the ping and the search reached the mirror',
    )

    // What the mirror holds: two Docker Hub repositories and one of ghcr.io.
    for (const path of [
      '/v2/e2esearch/manifests/1',
      '/v2/someone/e2esearch-tools/manifests/1',
      '/v2/ghcr.io/owner/e2esearch-app/manifests/1',
    ]) {
      t.equal((await get(`${mirror.url}${path}`, { accept: ACCEPT })).status, 200, `cached ${path}`)
    }
    await index.close()
    t.same(
      await search('e2esearch'),
      [
        'ghcr.io/owner/e2esearch-app|cached in this mirror|0|',
        'e2esearch|cached in this mirror|0|[OK]',
        'someone/e2esearch-tools|cached in this mirror|0|',
      ],
      'with the index down: the cached repositories whose names contain the term, marked local',
    )
    t.same(await search('no-such-thing'), [], 'nothing cached by that name: no results, no error')
  })

  t.test('docker search with authentication on: refused without docker login, answered after it', async (t) => {
    const work = await makeTempDir('search-auth')
    t.teardown(() => removeTempDir(work))
    const file = join(work, 'htpasswd')
    await runProgram('htpasswd', ['-B', '-b', '-c', file, 'alice', 'alice-pw'])
    const hub = await startFakeRegistry()
    t.teardown(() => hub.close())
    const index = await startSearchIndex([{ name: 'e2eauth', description: 'found with credentials' }])
    t.teardown(() => index.close())
    const mirror = await startMirror(t, {
      upstreams: [{ name: 'docker.io', url: hub.url }],
      search: { upstream: index.url },
      auth: { htpasswd: file },
    })
    const host = new URL(mirror.url).host
    const daemon = await startDockerd({ t, daemonJson: { 'insecure-registries': [host] } })
    const refused = await daemon.docker(['search', `${host}/e2eauth`]).then(
      () => 'answered',
      (err: Error) => err.message,
    )
    t.match(refused, /401|unauthorized|authentication required/i, 'without credentials: refused')
    t.same(index.searches, [], 'and nothing was asked of the index')
    await daemon.docker(['login', host, '-u', 'alice', '-p', 'alice-pw'])
    const out = await daemon.docker(['search', '--no-trunc', '--format', '{{.Name}}|{{.Description}}', `${host}/e2eauth`])
    t.equal(out.stdout.trim(), 'e2eauth|found with credentials', 'after docker login: the daemon sends them with the search')
  })
}
