import t from 'tap'
import { Writable } from 'node:stream'
import { parse as parseYamlText } from 'yaml'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { redactConfig, resolveConfig, type Config } from '../../src/config/load.js'
import { configCheck } from '../../src/config/check.js'
import { endpointsOf, endpointTarget } from '../../src/config/endpoints.js'
import { isPrivate, Registries } from '../../src/config/registries.js'
import { problemsOf } from '../helpers/config-problems.js'

const upstream = (c: Config, name: string) => c.upstreams.find((u) => u.name === name)!

t.test('a path on a pool URL is a name prefix; /v2 splits base from prefix', async (t) => {
  t.same(endpointTarget('https://m.daocloud.io/docker.io'), { base: 'https://m.daocloud.io', prefix: 'docker.io/' })
  t.same(endpointTarget('https://docker.m.daocloud.io'), { base: 'https://docker.m.daocloud.io', prefix: '' })
  t.same(endpointTarget('https://art.example/api/docker/hub/v2'), { base: 'https://art.example/api/docker/hub', prefix: '' })
  t.same(endpointTarget('http://127.0.0.1:5000/v2/ghcr.io/'), { base: 'http://127.0.0.1:5000', prefix: 'ghcr.io/' })
})

t.test('url keeps its meaning (API base); urls and endpoints become a pool in trust order', async (t) => {
  const c = resolveConfig({
    upstreams: [
      { name: 'art.example', url: 'https://art.example/api/docker/hub', realms: ['login.example'] },
      {
        name: 'docker.io',
        urls: ['https://docker.m.daocloud.io', 'https://m.example.cn/docker.io', 'https://registry-1.docker.io'],
        realms: ['auth.example'],
      },
      {
        name: 'ghcr.io',
        endpoints: [
          { url: 'https://ghcr-mirror.example', trusted: false, realms: [] },
          { url: 'https://ghcr.io', credentials: { username: 'bot', password: 's3cret' }, allowedNetworks: ['10.0.0.0/8'] },
        ],
      },
    ],
  })
  const art = endpointsOf(upstream(c, 'art.example'))
  t.equal(art.length, 1)
  t.match(art[0], { base: 'https://art.example/api/docker/hub', prefix: '', trusted: true, realms: ['login.example'] })
  t.notOk('endpoints' in upstream(c, 'art.example'), 'a url gives no endpoints list')

  const hub = upstream(c, 'docker.io')
  t.equal(hub.url, 'https://docker.m.daocloud.io', 'url is the first endpoint')
  t.same(
    endpointsOf(hub).map((e) => [e.base, e.prefix, e.trusted, e.realms]),
    [
      ['https://docker.m.daocloud.io', '', true, ['auth.example']],
      ['https://m.example.cn', 'docker.io/', true, ['auth.example']],
      ['https://registry-1.docker.io', '', true, ['auth.example']],
    ],
    "urls inherit the upstream's realms",
  )
  t.equal(hub.libraryPrefix, true, 'the built-in fields other than url stay')

  const ghcr = endpointsOf(upstream(c, 'ghcr.io'))
  t.match(ghcr[0], { trusted: false, realms: [], allowedNetworks: [] })
  t.match(ghcr[1], { trusted: true, credentials: [{ username: 'bot', password: 's3cret' }], allowedNetworks: ['10.0.0.0/8'] })
  t.ok(isPrivate(upstream(c, 'ghcr.io')), 'an endpoint with credentials makes the upstream private by default')
  t.notOk(isPrivate(hub))
  t.same(
    (redactConfig(c) as { upstreams: { name: string; endpoints?: { credentials?: unknown }[] }[] }).upstreams.find(
      (u) => u.name === 'ghcr.io',
    )!.endpoints![1]!.credentials,
    [{ username: '[REDACTED]', password: '[REDACTED]' }],
    'endpoint credentials are redacted',
  )

  const reg = new Registries(c)
  t.equal(reg.byName('registry-1.docker.io')?.name, 'docker.io', 'each endpoint host names its upstream')
  t.equal(reg.byName('docker.m.daocloud.io')?.name, 'docker.io')
  t.equal(reg.byName('m.example.cn'), undefined, 'a prefix mirror host names no single registry')
})

t.test('a flag URL replaces a pool; problems with pools', async (t) => {
  const c = resolveConfig(
    { upstreams: [{ name: 'docker.io', urls: ['https://a.example', 'https://b.example'] }] },
    { flags: { upstream: ['docker.io=http://127.0.0.1:5000'] } },
  )
  t.equal(upstream(c, 'docker.io').url, 'http://127.0.0.1:5000')
  t.equal(endpointsOf(upstream(c, 'docker.io')).length, 1)
  t.same(
    problemsOf(() =>
      resolveConfig({
        wellKnownUpstreams: false,
        defaultUpstream: 'a.example',
        upstreams: [
          { name: 'a.example', url: 'https://a.example', urls: ['https://b.example'] },
          { name: 'c.example', urls: ['https://c.example'], credentials: { username: 'u', password: 'p' } },
          { name: 'd.example', urls: [] },
          { name: 'e.example', endpoints: [{ url: 'ftp://e.example', trusted: 'no' }] },
          { name: 'f.example', endpoints: [{ url: 'https://u:p@f.example' }] },
          { name: 'g.example', endpoints: [{ credentials: {} }] },
        ],
      }),
    ).sort(),
    [
      'upstreams[0].urls: give only one of url, urls',
      'upstreams[1].credentials: with urls, give credentials per endpoint (endpoints[].credentials)',
      'upstreams[2].urls: must list at least one URL',
      'upstreams[3].endpoints[0].url: must be an http or https URL',
      'upstreams[3].endpoints[0].trusted: expected boolean, got string',
      'upstreams[4].endpoints[0].url: must not contain credentials (use credentials: instead)',
      'upstreams[5].endpoints[0].url: expected an http or https URL, got undefined',
    ].sort(),
  )
})

t.test('config check prints a pool that loads back the same', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'c.yaml')
  writeFileSync(
    file,
    [
      'upstreams:',
      '  - name: docker.io',
      '    urls: [https://docker.m.daocloud.io, https://registry-1.docker.io]',
      '  - name: ghcr.io',
      '    endpoints:',
      '      - { url: https://m.example.cn/ghcr.io, trusted: false }',
      '      - { url: https://ghcr.io, credentials: { username: bot, token: t0k } }',
      '',
    ].join('\n'),
  )
  let text = ''
  const out = new Writable({
    write(c: Buffer, _e, cb) {
      text += c.toString()
      cb()
    },
  })
  t.equal(await configCheck(['--config', file], out, new Writable({ write: (_c, _e, cb) => cb() }), { env: {}, cwd: dir }), 0)
  const printed = parseYamlText(text) as { upstreams: Record<string, unknown>[] }
  const hub = printed.upstreams.find((u) => u.name === 'docker.io')!
  t.notOk('url' in hub, 'a pool is printed as its endpoints only')
  t.same(
    (hub.endpoints as { url: string }[]).map((e) => e.url),
    ['https://docker.m.daocloud.io', 'https://registry-1.docker.io'],
  )
  t.match(text, 'token: "[REDACTED]"')
  t.notMatch(text, 't0k')
  // The secret is redacted in the output: give it back to compare the rest.
  const ghcr = printed.upstreams.find((u) => u.name === 'ghcr.io') as { endpoints: { credentials?: object }[] }
  ghcr.endpoints[1]!.credentials = { username: 'bot', token: 't0k' }
  t.same(resolveConfig(printed, { cwd: dir }), resolveConfig(parseYamlText(readFileSync(file, 'utf8')), { cwd: dir }), 'round trip')
})
