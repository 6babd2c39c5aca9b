/**
 * `podman search MIRROR/term` with a real podman (issue #15): podman reads the mirror's `/v2/_catalog` (it asks the
 * v2 API first) and prints the repositories whose names contain the term. The mirror holds images of two upstreams,
 * pulled through it with skopeo; curl follows the catalog's `Link` pages as the distribution spec describes them.
 * podman runs isolated: its own storage (vfs) and run dirs, an empty registries.conf.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { runProgram } from '../helpers/child-program.js'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startMirror } from '../helpers/mirror.js'
import { requirePrograms } from '../helpers/programs.js'
import { skopeoInspect } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [1000] }

if (requirePrograms(t, ['podman', 'skopeo', 'curl'])) {
  t.test('podman search lists the catalog of a mirror holding images of two upstreams; curl pages through it', async (t) => {
    const hub = await startFakeRegistry()
    const ghcr = await startFakeRegistry({ auth: 'none' })
    t.teardown(() => Promise.all([hub.close(), ghcr.close()]))
    for (const r of ['library/alpine', 'library/nginx', 'team/web-app']) hub.addImage(r, '1', ONE)
    for (const r of ['owner/app', 'owner/tool']) ghcr.addImage(r, '1', ONE)
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'ghcr.io', url: ghcr.url },
      ],
      // podman asks /v1/search first for a term; with search off (404) it reads the catalog, as the issue found it.
      search: { enabled: false },
    })
    const host = new URL(mirror.url).host
    for (const ref of ['library/alpine', 'library/nginx', 'team/web-app', 'ghcr.io/owner/app', 'ghcr.io/owner/tool']) {
      await skopeoInspect(`docker://${host}/${ref}:1`, { raw: true })
    }

    const dir = await makeTempDir('podman')
    t.teardown(() => removeTempDir(dir))
    const conf = join(dir, 'registries.conf')
    await writeFile(conf, '')
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: dir,
      XDG_RUNTIME_DIR: dir,
      CONTAINERS_REGISTRIES_CONF: conf,
      TMPDIR: dir,
    }
    const podman = async (term: string, at = host, format = '{{.Name}}') => {
      const args = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs', '--events-backend', 'none']
      const out = await runProgram('podman', [...args, 'search', '--tls-verify=false', '--no-trunc', '--format', format, `${at}/${term}`], {
        env,
        timeoutMs: 60_000,
      })
      return out.stdout
        .trim()
        .split('\n')
        .filter((l) => l !== '')
    }
    const all = ['ghcr.io/owner/app', 'ghcr.io/owner/tool', 'library/alpine', 'library/nginx', 'team/web-app']
    t.same(
      await podman(''),
      all.map((n) => `${host}/${n}`),
      'every repository, of both upstreams',
    )
    t.same(await podman('app'), [`${host}/ghcr.io/owner/app`, `${host}/team/web-app`], 'those whose names contain the term')
    const asked = mirror.logs.filter((l) => l.includes('"msg":"request"')).map((l) => /"path":"([^"]*)"/.exec(l)?.[1])
    t.equal(asked.filter((p) => p === '/v2/_catalog').length, 2, 'podman read the catalog for both searches')

    // With search on, podman asks /v1/search for a term: with the index unreachable, the mirror answers what it holds.
    const withSearch = await startMirror(
      t,
      {
        upstreams: [
          { name: 'docker.io', url: hub.url },
          { name: 'ghcr.io', url: ghcr.url },
        ],
        search: { upstream: 'http://127.0.0.1:9' },
      },
      { dataDir: mirror.dataDir },
    )
    const searchHost = new URL(withSearch.url).host
    t.same(
      await podman('app', searchHost, '{{.Name}}|{{.Description}}'),
      [`${searchHost}/ghcr.io/owner/app|cached in this mirror`, `${searchHost}/team/web-app|cached in this mirror`],
      'podman search through /v1/search: local results, marked',
    )
    t.ok(withSearch.logs.some((l) => l.includes('"path":"/v1/search?n=25&q=app"')))

    // The spec's pagination with curl: n=2, then the Link of each page.
    const pages: string[][] = []
    let next: string | undefined = '/v2/_catalog?n=2'
    while (next !== undefined && pages.length < 10) {
      const { stdout } = await runProgram('curl', ['-sS', '--fail', '-D', '-', `${mirror.url}${next}`], { env })
      const [head, body] = stdout.split('\r\n\r\n') as [string, string]
      pages.push((JSON.parse(body) as { repositories: string[] }).repositories)
      next = /^link: <([^>]+)>; rel="next"\r?$/im.exec(head)?.[1]
    }
    t.same(pages, [all.slice(0, 2), all.slice(2, 4), all.slice(4)], 'three pages, each found by the Link of the one before')
  })
}
