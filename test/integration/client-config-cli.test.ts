/**
 * `regmirror client-config` through the real entry point, with a configuration file, the environment and flags:
 * what it prints parses with each client's format and names exactly the configured upstreams.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { runCli } from '../helpers/cli.js'
import { splitPrinted } from '../helpers/client-files.js'

const dir = await mkdtemp(join(tmpdir(), 'regmirror-client-config-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const file = join(dir, 'regmirror.yaml')
await writeFile(
  file,
  [
    'listen: 10.1.2.3:5000',
    'wellKnownUpstreams: false',
    'upstreams:',
    '  - name: docker.io',
    '    url: https://registry-1.docker.io',
    '    libraryPrefix: true',
    '  - name: registry.internal:5000',
    '    url: http://10.0.0.5:5000',
    '',
  ].join('\n'),
)

t.test('all four clients from the file; an upstream from the environment is in every one', async (t) => {
  const r = await runCli(['client-config', '--config', file], { REGMIRROR_UPSTREAMS: 'ghcr.io=https://ghcr.io' })
  t.equal(r.code, 0, r.stderr)
  const names = ['docker.io', 'registry.internal:5000', 'ghcr.io']
  const printed = splitPrinted(r.stdout)
  t.same(
    printed.map((f) => f.path),
    [
      '/etc/docker/daemon.json',
      ...names.map((n) => `/etc/containerd/certs.d/${n}/hosts.toml`),
      '/etc/containers/registries.conf.d/regmirror.conf',
      '/etc/rancher/k3s/registries.yaml',
    ],
  )
  const [daemon, ...rest] = printed
  // The listen address names the mirror; plain HTTP.
  t.same(JSON.parse(daemon!.text), { 'registry-mirrors': ['http://10.1.2.3:5000'], 'insecure-registries': ['10.1.2.3:5000'] })
  for (const f of rest.slice(0, 3)) {
    const toml = parseToml(f.text) as { host: Record<string, unknown> }
    t.same(Object.keys(toml.host), ['http://10.1.2.3:5000'], f.path)
  }
  const conf = parseToml(rest[3]!.text) as { registry: { prefix: string; mirror: { location: string }[] }[] }
  t.same(
    conf.registry.map((x) => [x.prefix, x.mirror[0]!.location]),
    names.map((n) => [n, `10.1.2.3:5000/${n}`]),
  )
  const k3s = parseYaml(rest[4]!.text) as { mirrors: Record<string, { endpoint: string[] }> }
  t.same(Object.keys(k3s.mirrors), names)
  t.match(r.stderr, /^note: Docker daemon: Docker uses registry-mirrors for Docker Hub images only/m)
  t.notMatch(r.stderr, /every interface/, 'a concrete listen address needs no replacing')
})

t.test('one client, one file: printed bare, its path on stderr; --mirror and a TLS listener', async (t) => {
  const r = await runCli(['client-config', '--config', file, '--k3s', '--mirror', 'https://mirror.example.internal:5443'])
  t.equal(r.code, 0, r.stderr)
  t.same(parseYaml(r.stdout), {
    mirrors: {
      'docker.io': { endpoint: ['https://mirror.example.internal:5443'] },
      'registry.internal:5000': { endpoint: ['https://mirror.example.internal:5443'] },
    },
  })
  t.match(r.stderr, /write this to \/etc\/rancher\/k3s\/registries\.yaml/)
  t.match(r.stderr, /k3s configs: \{"mirror\.example\.internal:5443": \{tls: \{ca_file/)

  const tls = await runCli([
    'client-config',
    '--config',
    file,
    '--docker',
    '--tls-cert',
    'a.crt',
    '--tls-key',
    'a.key',
    '--listen',
    ':5000',
  ])
  t.equal(tls.code, 0, tls.stderr)
  t.same(JSON.parse(tls.stdout), { 'registry-mirrors': [`https://${await hostName()}:5443`] }, 'the TLS listener, no insecure entry')
  t.match(tls.stderr, /listens on 0\.0\.0\.0:5443 \(every interface\)/)
})

t.test('mistakes: a bad --mirror or argument is a usage error; a bad configuration names its problem', async (t) => {
  const mirror = await runCli(['client-config', '--config', file, '--mirror', 'http://mirror:5000/docker.io'])
  t.equal(mirror.code, 2)
  t.match(mirror.stderr, /--mirror .*origin only/)
  t.equal(mirror.stdout, '')
  const arg = await runCli(['client-config', '--config', file, 'docker'])
  t.equal(arg.code, 2)
  t.match(arg.stderr, /unexpected argument: docker/)
  const config = await runCli(['client-config', '--default-upstream', 'nowhere.example'])
  t.equal(config.code, 2)
  t.match(config.stderr, /--default-upstream: upstream "nowhere\.example" is not configured/)
  const help = await runCli(['help', 'client-config'])
  t.equal(help.code, 0)
  t.match(help.stdout, /--containerd +\/etc\/containerd\/certs\.d\/REGISTRY\/hosts\.toml/)
})

async function hostName(): Promise<string> {
  const { hostname } = await import('node:os')
  return hostname()
}
