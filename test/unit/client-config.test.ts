import t from 'tap'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import {
  clientConfigs,
  mirrorFromConfig,
  parseMirrorUrl,
  renderFiles,
  type ClientConfig,
  type ClientFile,
} from '../../src/clients/client-config.js'
import { resolveConfig } from '../../src/config/load.js'
import { WELL_KNOWN_UPSTREAMS } from '../../src/config/schema.js'
import { Registries } from '../../src/config/registries.js'
import { route, type Route } from '../../src/http/router.js'
import { splitPrinted } from '../helpers/client-files.js'

const PLAIN = parseMirrorUrl('http://mirror.example.internal:5000')
const BUILT_IN = Object.keys(WELL_KNOWN_UPSTREAMS)

function files(configs: ClientConfig[], client: ClientConfig['client']): ClientFile[] {
  return configs.find((c) => c.client === client)?.files ?? []
}

interface HostsToml {
  server?: string
  host: Record<string, { capabilities?: string[]; skip_verify?: boolean; override_path?: boolean }>
}
interface RegistriesConf {
  registry: { prefix: string; location: string; mirror: { location: string; insecure?: boolean }[] }[]
}

/** Where the mirror sends what a client sends for `registry/repo:1`, through the routing the mirror runs. */
function routed(registries: Registries, path: string): { up: string; repo: string } {
  const r = route('GET', path, 'mirror.example.internal:5000', registries) as Extract<Route, { repo: string }>
  return { up: r.up.name, repo: r.repo }
}

t.test('the default configuration: every built-in upstream, for each client, parsed back', async (t) => {
  const config = resolveConfig({})
  const registries = new Registries(config)
  const { configs, notes } = clientConfigs(config, PLAIN)
  t.same(
    configs.map((c) => c.client),
    ['docker', 'containerd', 'podman', 'k3s'],
  )
  t.same(notes, [], 'nothing to warn about with the built-ins and an http mirror')

  const [daemon, ...more] = files(configs, 'docker')
  t.same(more, [])
  t.equal(daemon?.path, '/etc/docker/daemon.json')
  t.same(JSON.parse(daemon!.text), {
    'registry-mirrors': ['http://mirror.example.internal:5000'],
    'insecure-registries': ['mirror.example.internal:5000'],
  })
  t.match(configs[0]!.notes.join('\n'), /Docker Hub images only/)
  // What the daemon sends to a registry-mirrors entry: plain names, which must reach docker.io.
  t.same(routed(registries, '/v2/alpine/manifests/3.20'), { up: 'docker.io', repo: 'library/alpine' })

  const hosts = files(configs, 'containerd')
  t.same(
    hosts.map((f) => f.path),
    BUILT_IN.map((n) => `/etc/containerd/certs.d/${n}/hosts.toml`),
    'one hosts.toml per upstream',
  )
  for (const [i, f] of hosts.entries()) {
    const name = BUILT_IN[i]!
    const toml = parseToml(f.text) as unknown as HostsToml
    t.equal(toml.server, name === 'docker.io' ? 'https://registry-1.docker.io' : `https://${name}`, `${name}: server is the registry`)
    t.same(Object.keys(toml.host), ['http://mirror.example.internal:5000'], `${name}: the mirror is the one host`)
    t.same(
      toml.host['http://mirror.example.internal:5000'],
      { capabilities: ['pull', 'resolve'] },
      `${name}: pull and resolve, no skip_verify`,
    )
    // containerd adds ?ns=<the directory's registry> to every request to a host that is not the registry.
    t.same(routed(registries, `/v2/owner/app/manifests/1?ns=${name}`), { up: name, repo: 'owner/app' }, `${name}: routed by ?ns=`)
  }

  const [conf] = files(configs, 'podman')
  t.equal(conf?.path, '/etc/containers/registries.conf.d/regmirror.conf')
  const reg = parseToml(conf!.text) as unknown as RegistriesConf
  t.same(
    reg.registry.map((r) => r.prefix),
    BUILT_IN,
  )
  for (const r of reg.registry) {
    t.equal(r.location, r.prefix, `${r.prefix}: falls back to the registry itself`)
    t.same(r.mirror, [{ location: `mirror.example.internal:5000/${r.prefix}`, insecure: true }], `${r.prefix}: the mirror, by path`)
    // containers/image sends /v2/<location path>/<repo>/...: the path-prefix convention.
    const path = new URL(`http://${r.mirror[0]!.location}/owner/app`).pathname
    t.same(routed(registries, `/v2${path}/manifests/1`), { up: r.prefix, repo: 'owner/app' }, `${r.prefix}: routed by the prefix`)
  }

  const [yaml] = files(configs, 'k3s')
  t.equal(yaml?.path, '/etc/rancher/k3s/registries.yaml')
  t.same(parseYaml(yaml!.text), {
    mirrors: Object.fromEntries(BUILT_IN.map((n) => [n, { endpoint: ['http://mirror.example.internal:5000'] }])),
  })
})

t.test('an https mirror: nothing insecure anywhere, and a note on trusting its CA', async (t) => {
  const config = resolveConfig({})
  const { configs, notes } = clientConfigs(config, parseMirrorUrl('https://mirror.example.internal:5443'))
  t.same(JSON.parse(files(configs, 'docker')[0]!.text), { 'registry-mirrors': ['https://mirror.example.internal:5443'] })
  const reg = parseToml(files(configs, 'podman')[0]!.text) as unknown as RegistriesConf
  for (const r of reg.registry) t.same(r.mirror, [{ location: `mirror.example.internal:5443/${r.prefix}` }], r.prefix)
  for (const f of files(configs, 'containerd')) {
    const toml = parseToml(f.text) as unknown as HostsToml
    t.same(toml.host, { 'https://mirror.example.internal:5443': { capabilities: ['pull', 'resolve'] } }, f.path)
  }
  t.match(notes.join('\n'), /certs\.d\/mirror\.example\.internal:5443\/ca\.crt/)
  // The scheme's default port is left out, as clients write it.
  const bare = parseMirrorUrl('https://mirror.example.internal:443/')
  t.same(bare, { url: 'https://mirror.example.internal', host: 'mirror.example.internal', insecure: false })
})

t.test('only the configured upstreams: disabled built-ins left out, custom ones in, names clients cannot use noted', async (t) => {
  const config = resolveConfig({
    upstreams: [
      { name: 'ghcr.io', enabled: false },
      { name: 'registry.internal:5000', url: 'http://10.0.0.5:5000' },
      { name: 'harbor', url: 'https://harbor.example.com' },
    ],
  })
  const { configs, notes } = clientConfigs(config, PLAIN, ['containerd', 'k3s'])
  t.same(
    configs.map((c) => c.client),
    ['containerd', 'k3s'],
    'only the clients asked for',
  )
  const names = files(configs, 'containerd').map((f) => f.path.split('/')[4])
  t.notOk(names.includes('ghcr.io'), 'a disabled built-in is left out')
  t.ok(names.includes('registry.internal:5000'), 'a custom upstream is in')
  t.notOk(names.includes('harbor'), 'an upstream name no client can put in a reference is left out')
  t.match(notes.join('\n'), /upstream harbor is not a registry host name.*MIRROR\/harbor\/app/)
  const internal = parseToml(files(configs, 'containerd').find((f) => f.path.includes('registry.internal:5000'))!.text)
  t.equal(internal.server, 'https://registry.internal:5000')
  t.same(Object.keys((parseYaml(files(configs, 'k3s')[0]!.text) as { mirrors: object }).mirrors), names)
})

t.test('Docker: registry-mirrors only while Docker Hub names reach docker.io', async (t) => {
  const other = resolveConfig({ defaultUpstream: 'quay.io' })
  const a = clientConfigs(other, PLAIN, ['docker'])
  t.same(JSON.parse(files(a.configs, 'docker')[0]!.text), { 'insecure-registries': ['mirror.example.internal:5000'] })
  t.match(a.configs[0]!.notes.join('\n'), /defaultUpstream is quay\.io, not docker\.io.*registry-mirrors is left out/)

  const noHub = resolveConfig({ upstreams: [{ name: 'docker.io', enabled: false }], defaultUpstream: 'ghcr.io' })
  const b = clientConfigs(noHub, parseMirrorUrl('https://mirror.example.internal'), ['docker'])
  t.same(files(b.configs, 'docker'), [], 'an https mirror without docker.io: nothing for the daemon')
  t.match(b.configs[0]!.notes.join('\n'), /no docker\.io upstream/)
})

t.test('the default mirror URL is the server’s own listener', async (t) => {
  const cases: [Record<string, unknown>, string, RegExp | undefined][] = [
    [{}, 'http://node-1.example:5000', /listens on 0\.0\.0\.0:5000 \(every interface\).*node-1\.example/],
    [{ listen: '[::]:5000' }, 'http://node-1.example:5000', /listens on \[::\]:5000/],
    [{ listen: ':6000' }, 'http://node-1.example:6000', /every interface/],
    [{ listen: '10.0.0.7:5000' }, 'http://10.0.0.7:5000', undefined],
    [{ listen: '[fd00::7]:5000' }, 'http://[fd00::7]:5000', undefined],
    [{ listen: '127.0.0.1:5000' }, 'http://127.0.0.1:5000', /only this machine/],
    // With a certificate, the TLS listener: clients should use it.
    [{ server: { tls: { cert: '/x/tls.crt', key: '/x/tls.key', listen: '10.0.0.7:5443' } } }, 'https://10.0.0.7:5443', undefined],
  ]
  for (const [raw, url, note] of cases) {
    const { mirror, notes } = mirrorFromConfig(resolveConfig(raw), 'node-1.example')
    t.equal(mirror.url, url, JSON.stringify(raw))
    if (note) t.match(notes.join('\n'), note, JSON.stringify(raw))
    else t.same(notes, [], JSON.stringify(raw))
  }
})

t.test('--mirror is an http(s) origin without credentials', async (t) => {
  for (const [bad, why] of [
    ['mirror.example.internal:5000', /must be http/],
    ['ftp://mirror.example.internal', /must be http/],
    ['http://user:pw@mirror.example.internal:5000', /no user or password/],
    ['http://mirror.example.internal:5000/docker.io', /origin only/],
    ['http://mirror.example.internal:5000/?ns=docker.io', /origin only/],
    ['not a url', /not a URL/],
  ] as const) {
    t.throws(() => parseMirrorUrl(bad), { message: why }, bad)
  }
  t.same(parseMirrorUrl('http://[fd00::7]:5000'), { url: 'http://[fd00::7]:5000', host: '[fd00::7]:5000', insecure: true })
})

t.test('the printed text: one file bare, several each under a header, read back whole', async (t) => {
  const config = resolveConfig({})
  const one = clientConfigs(config, PLAIN, ['docker']).configs
  t.equal(renderFiles(one), files(one, 'docker')[0]!.text, 'a single file is printed as it is')
  const all = clientConfigs(config, PLAIN).configs
  const printed = splitPrinted(renderFiles(all))
  const expected = all.flatMap((c) => c.files.map((f) => ({ title: c.title, path: f.path, text: f.text })))
  t.same(printed, expected, 'every file, with its client and path, exactly')
  const parsers: Record<ClientFile['format'], (text: string) => unknown> = {
    json: (x) => JSON.parse(x),
    toml: (x) => parseToml(x),
    yaml: (x) => parseYaml(x),
  }
  for (const f of all.flatMap((c) => c.files)) t.doesNotThrow(() => parsers[f.format](f.text), `${f.path} parses as ${f.format}`)
  t.equal(printed.length, 1 + BUILT_IN.length + 1 + 1)
})
