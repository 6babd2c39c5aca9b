import t from 'tap'
import { resolveConfig } from '../../src/config/load.js'
import { route, type Route } from '../../src/http/router.js'
import { Registries } from '../../src/config/registries.js'

const D = `sha256:${'a'.repeat(64)}`

const registries = new Registries(
  resolveConfig({
    wellKnownUpstreams: false,
    upstreams: [
      { name: 'docker.io', url: 'https://registry-1.docker.io', libraryPrefix: true, deny: ['secret/**'] },
      { name: 'ghcr.io', url: 'https://ghcr.io', hosts: ['ghcr.mirror.example.com'] },
      { name: 'registry.internal:5000', url: 'http://10.0.0.5:5000', hosts: ['internal.mirror.example.com:8443'] },
    ],
  }),
)

function where(path: string, host?: string): { up: string; repo: string } {
  const r = route('GET', path, host, registries) as Extract<Route, { repo: string }>
  return { up: r.up.name, repo: r.repo }
}

t.test('each convention picks its upstream and repository', async (t) => {
  const cases: [string, string | undefined, string, string][] = [
    // Docker daemon registry-mirrors: no registry named, Docker Hub's library/ rule
    ['/v2/alpine/manifests/3.20', 'mirror:5000', 'docker.io', 'library/alpine'],
    ['/v2/library/alpine/manifests/3.20', undefined, 'docker.io', 'library/alpine'],
    ['/v2/myorg/app/blobs/' + D, undefined, 'docker.io', 'myorg/app'],
    // containerd hosts.toml: ?ns=, the path is the repository as the registry knows it
    ['/v2/owner/app/manifests/1?ns=ghcr.io', undefined, 'ghcr.io', 'owner/app'],
    ['/v2/library/alpine/manifests/3.20?ns=docker.io', undefined, 'docker.io', 'library/alpine'],
    ['/v2/app/manifests/1?ns=registry.internal:5000', undefined, 'registry.internal:5000', 'app'],
    ['/v2/owner/app/tags/list?ns=GHCR.IO&n=10', undefined, 'ghcr.io', 'owner/app'],
    // the upstream's own host names it too (containerd uses it when hosts.toml says server = that host)
    ['/v2/library/alpine/manifests/3.20?ns=registry-1.docker.io', undefined, 'docker.io', 'library/alpine'],
    ['/v2/app/manifests/1?ns=10.0.0.5:5000', undefined, 'registry.internal:5000', 'app'],
    // path prefix: the first component names a configured registry, which is removed
    ['/v2/ghcr.io/owner/app/manifests/1', undefined, 'ghcr.io', 'owner/app'],
    ['/v2/ghcr.io/app/manifests/1', undefined, 'ghcr.io', 'app'],
    ['/v2/docker.io/alpine/manifests/3.20', undefined, 'docker.io', 'library/alpine'],
    ['/v2/registry.internal:5000/team/app/blobs/' + D, undefined, 'registry.internal:5000', 'team/app'],
    // Host header mapped with hosts: (with or without the port the client added)
    ['/v2/owner/app/manifests/1', 'ghcr.mirror.example.com', 'ghcr.io', 'owner/app'],
    ['/v2/owner/app/manifests/1', 'GHCR.mirror.example.com:5000', 'ghcr.io', 'owner/app'],
    ['/v2/app/manifests/1', 'internal.mirror.example.com:8443', 'registry.internal:5000', 'app'],
    // an unmapped Host is not a registry name: default upstream
    ['/v2/owner/app/manifests/1', 'ghcr.io', 'docker.io', 'owner/app'],
    ['/v2/owner/app/manifests/1', 'internal.mirror.example.com:9999', 'docker.io', 'owner/app'],
  ]
  for (const [path, host, up, repo] of cases) t.same(where(path, host), { up, repo }, `${path} Host: ${host ?? '-'}`)
})

t.test('precedence: ?ns= over Host over path prefix over the default', async (t) => {
  t.same(where('/v2/owner/app/manifests/1?ns=docker.io', 'ghcr.mirror.example.com'), { up: 'docker.io', repo: 'owner/app' })
  // With ns or a mapped Host, a registry-looking first component is part of the repository name.
  t.same(where('/v2/ghcr.io/owner/app/manifests/1?ns=docker.io'), { up: 'docker.io', repo: 'ghcr.io/owner/app' })
  t.same(where('/v2/docker.io/owner/app/manifests/1', 'ghcr.mirror.example.com'), { up: 'ghcr.io', repo: 'docker.io/owner/app' })
})

t.test('containerd override_path: a first component naming the ?ns= registry is a prefix', async (t) => {
  const cases: [string, string, string][] = [
    // [host."http://mirror:5000/v2/docker.io"] override_path = true
    ['/v2/docker.io/library/alpine/manifests/3.20?ns=docker.io', 'docker.io', 'library/alpine'],
    ['/v2/docker.io/alpine/manifests/3.20?ns=docker.io', 'docker.io', 'library/alpine'],
    ['/v2/docker.io/library/alpine/blobs/' + D + '?ns=docker.io', 'docker.io', 'library/alpine'],
    ['/v2/docker.io/library/alpine/tags/list?ns=docker.io&n=5', 'docker.io', 'library/alpine'],
    ['/v2/ghcr.io/owner/app/referrers/' + D + '?ns=ghcr.io', 'ghcr.io', 'owner/app'],
    // the same registry named another way: case, or its registry host on either side
    ['/v2/GHCR.IO/owner/app/manifests/1?ns=ghcr.io', 'ghcr.io', 'owner/app'],
    ['/v2/registry-1.docker.io/library/alpine/manifests/3.20?ns=docker.io', 'docker.io', 'library/alpine'],
    ['/v2/docker.io/library/alpine/manifests/3.20?ns=registry-1.docker.io', 'docker.io', 'library/alpine'],
    ['/v2/registry.internal:5000/team/app/manifests/1?ns=registry.internal:5000', 'registry.internal:5000', 'team/app'],
    // only one prefix is removed: the rest is the repository
    ['/v2/ghcr.io/ghcr.io/app/manifests/1?ns=ghcr.io', 'ghcr.io', 'ghcr.io/app'],
    // another registry's name is not a prefix: part of the repository, as before
    ['/v2/ghcr.io/owner/app/manifests/1?ns=docker.io', 'docker.io', 'ghcr.io/owner/app'],
    ['/v2/docker.io/owner/app/manifests/1?ns=ghcr.io', 'ghcr.io', 'docker.io/owner/app'],
    // a one-component name is never a prefix alone
    ['/v2/docker.io/manifests/1?ns=docker.io', 'docker.io', 'library/docker.io'],
  ]
  for (const [path, up, repo] of cases) t.same(where(path), { up, repo }, path)
  // The prefix never smuggles in another registry's policy: docker.io's deny list still applies.
  t.throws(() => route('GET', '/v2/docker.io/secret/app/manifests/1?ns=docker.io', undefined, registries), { code: 'DENIED' })
})

t.test('an unconfigured registry is NAME_UNKNOWN, whatever names it', async (t) => {
  for (const path of [
    '/v2/app/manifests/1?ns=evil.example',
    '/v2/app/manifests/1?ns=169.254.169.254',
    '/v2/app/manifests/1?ns=10.0.0.5', // the upstream's host, but not with its port
    '/v2/app/manifests/1?ns=',
    '/v2/evil.example/app/manifests/1',
    '/v2/169.254.169.254/latest/manifests/1',
    '/v2/localhost/app/manifests/1',
    '/v2/quay.io/app/tags/list',
    '/v2/quay.io/app/blobs/' + D,
    // a first component with a port is a registry too (Docker's reference grammar), never a Docker Hub namespace
    '/v2/myhost:5000/app/manifests/1',
    '/v2/localhost:5000/app/manifests/1',
  ]) {
    t.throws(() => route('GET', path, undefined, registries), { code: 'NAME_UNKNOWN', message: /not configured/ }, path)
  }
})

t.test('deny applies to the upstream-side name under every convention', async (t) => {
  for (const [path, host] of [
    ['/v2/secret/app/manifests/1', undefined],
    ['/v2/secret/app/blobs/' + D, undefined],
    ['/v2/secret/app/tags/list', undefined],
    ['/v2/secret/app/manifests/1?ns=docker.io', 'ghcr.mirror.example.com'],
    ['/v2/docker.io/secret/app/manifests/1', undefined],
  ] as const) {
    t.throws(() => route('GET', path, host, registries), { code: 'DENIED' }, path)
  }
  t.same(where('/v2/ghcr.io/secret/app/manifests/1'), { up: 'ghcr.io', repo: 'secret/app' }, 'deny lists are per upstream')
})

t.test('search and catalog routes (issue #15)', async (t) => {
  t.same(route('GET', '/v1/_ping', undefined, registries), { kind: 'ping' })
  t.same(route('HEAD', '/v1/_ping/', undefined, registries), { kind: 'ping' })
  t.same(route('GET', '/v1/search?q=nginx&n=25', undefined, registries), { kind: 'search' })
  t.same(route('GET', '/v2/_catalog?n=10', undefined, registries), { kind: 'catalog', up: undefined }, 'every upstream')
  const byNs = route('GET', '/v2/_catalog?ns=ghcr.io', undefined, registries) as Extract<Route, { kind: 'catalog' }>
  t.equal(byNs.up?.name, 'ghcr.io', '?ns= names one upstream')
  const byHost = route('GET', '/v2/_catalog', 'ghcr.mirror.example.com:5000', registries) as Extract<Route, { kind: 'catalog' }>
  t.equal(byHost.up?.name, 'ghcr.io', 'so does a mapped Host')
  t.throws(() => route('GET', '/v2/_catalog?ns=evil.example.com', undefined, registries), { code: 'NAME_UNKNOWN' })
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
    t.throws(() => route(method, '/v1/search?q=x', undefined, registries), { code: 'UNSUPPORTED' }, `${method} /v1/search`)
    t.throws(() => route(method, '/v2/_catalog', undefined, registries), { code: 'UNSUPPORTED' }, `${method} /v2/_catalog`)
  }
  t.throws(() => route('GET', '/v1/other', undefined, registries), { code: 'NAME_UNKNOWN' }, 'no other v1 path')
  t.throws(() => route('GET', '/v2/_catalog/extra', undefined, registries), { code: 'NAME_UNKNOWN' }, 'nothing under the catalog')
})
