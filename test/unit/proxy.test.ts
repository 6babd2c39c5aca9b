import { createServer, type Socket } from 'node:net'
import t from 'tap'
import { ConfigError } from '../../src/config/errors.js'
import { redactConfig, resolveConfig } from '../../src/config/load.js'
import { isRegmirrorError } from '../../src/errors.js'
import { AddressPolicy } from '../../src/upstream/address-policy.js'
import { describeProxy, Dispatchers, proxyEnvironment, proxyFailure, proxyFor } from '../../src/upstream/proxy.js'

const via = (env: Record<string, string>, target: string, setting?: string) =>
  proxyFor(setting, new URL(target), proxyEnvironment(env))?.href

t.test("the environment, read as Go's httpproxy reads it", async (t) => {
  const env = { HTTPS_PROXY: 'http://secure:3128', HTTP_PROXY: 'http://plain:3128' }
  t.equal(via(env, 'https://registry.example/v2/'), 'http://secure:3128/', 'HTTPS_PROXY for https URLs')
  t.equal(via(env, 'http://registry.example/v2/'), 'http://plain:3128/', 'HTTP_PROXY for http URLs')
  t.equal(via({ HTTP_PROXY: 'http://plain:3128' }, 'https://registry.example/'), undefined, 'no fallback to HTTP_PROXY for https')
  t.equal(
    via({ HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:1' }, 'https://r.example/'),
    'http://upper:1/',
    'upper case first',
  )
  t.equal(via({ HTTPS_PROXY: '', https_proxy: 'http://lower:1' }, 'https://r.example/'), 'http://lower:1/', 'empty counts as unset')
  t.equal(via({ HTTPS_PROXY: 'proxy.corp:3128' }, 'https://r.example/'), 'http://proxy.corp:3128/', 'no scheme: http://')
  t.equal(via({ HTTPS_PROXY: 'socks5://s:1080' }, 'https://r.example/'), 'socks5://s:1080', 'socks5 from the environment')
  t.same(proxyEnvironment({ HTTPS_PROXY: 'proxy corp:3128' }).invalid, ['HTTPS_PROXY'], 'an unusable value is ignored and reported')
})

t.test('loopback and localhost are never proxied by the environment', async (t) => {
  const env = { HTTPS_PROXY: 'http://p:3128', HTTP_PROXY: 'http://p:3128' }
  for (const target of ['http://localhost:5000/', 'http://127.0.0.1:5000/', 'http://127.9.9.9/', 'https://[::1]:5443/']) {
    t.equal(via(env, target), undefined, target)
  }
  t.equal(via(env, 'http://localhost.example/'), 'http://p:3128/', 'only the name localhost itself')
  t.equal(via(env, 'http://127.0.0.1:5000/', 'http://p:3128'), 'http://p:3128/', 'an explicit upstream proxy applies to loopback too')
})

t.test('NO_PROXY', async (t) => {
  const check = (noProxy: string, target: string) => via({ HTTPS_PROXY: 'http://p:1', HTTP_PROXY: 'http://p:1', NO_PROXY: noProxy }, target)
  const direct = (noProxy: string, target: string) => t.equal(check(noProxy, target), undefined, `${noProxy} exempts ${target}`)
  const proxied = (noProxy: string, target: string) =>
    t.equal(check(noProxy, target), 'http://p:1/', `${noProxy} does not exempt ${target}`)
  direct('example.com', 'https://example.com/')
  direct('example.com', 'https://registry.example.com/')
  proxied('example.com', 'https://badexample.com/')
  direct('.example.com', 'https://registry.example.com/')
  proxied('.example.com', 'https://example.com/')
  direct('*.example.com', 'https://a.example.com/')
  proxied('*.example.com', 'https://example.com/')
  direct('example.com:5000', 'http://example.com:5000/')
  proxied('example.com:5000', 'http://example.com:5001/')
  direct('example.com:443', 'https://example.com/')
  direct('10.0.0.0/8', 'http://10.20.30.40:5000/')
  proxied('10.0.0.0/8', 'http://11.0.0.1/')
  proxied('10.0.0.0/8', 'http://ten.example/')
  direct('192.0.2.7', 'http://192.0.2.7:5000/')
  direct('192.0.2.7:5000', 'http://192.0.2.7:5000/')
  proxied('192.0.2.7:5000', 'http://192.0.2.7:5001/')
  direct('fd00::/8', 'https://[fd00::1]/')
  direct('[2001:db8::1]:443', 'https://[2001:db8::1]/')
  direct(' Foo.Example , bar.example ', 'https://x.foo.example/')
  direct('*', 'https://anything.example/')
  proxied('', 'https://anything.example/')
  direct('bücher.example', 'https://xn--bcher-kva.example/')
})

t.test('an upstream proxy: `none` goes direct, any other wins over the environment', async (t) => {
  const env = { HTTPS_PROXY: 'http://env:1', NO_PROXY: 'registry.example' }
  t.equal(via(env, 'https://elsewhere.example/', 'none'), undefined)
  t.equal(via(env, 'https://registry.example/', 'socks5://s:1080'), 'socks5://s:1080', 'NO_PROXY does not apply to it')
  t.equal(describeProxy(new URL('http://user:secret@proxy:3128')), 'http://proxy:3128', 'named without credentials')
})

t.test('the proxy setting: validated without echoing it, its credentials redacted', async (t) => {
  const c = resolveConfig({ upstreams: [{ name: 'a.example', url: 'https://a.example', proxy: 'http://user:s3cret@proxy:3128' }] })
  const up = c.upstreams.find((u) => u.name === 'a.example')!
  t.equal(up.proxy, 'http://user:s3cret@proxy:3128')
  const shown = JSON.stringify(redactConfig(c))
  t.notMatch(shown, 's3cret')
  t.notMatch(shown, 'user:')
  t.match(shown, 'http://[REDACTED]:[REDACTED]@proxy:3128')
  t.equal(resolveConfig({ upstreams: [{ name: 'a.example', url: 'https://a.example', proxy: 'none' }] }).upstreams.at(-1)?.proxy, 'none')
  for (const bad of ['ftp://user:s3cret@proxy:21', 'http://user:s3cret@proxy:3128/path', 'not a url s3cret', 'http://:s3cret@proxy:1']) {
    let problems: string[] = []
    try {
      resolveConfig({ upstreams: [{ name: 'a.example', url: 'https://a.example', proxy: bad }] })
    } catch (e) {
      problems = (e as ConfigError).problems
    }
    t.match(problems, [/^upstreams\[0\]\.proxy: must be none or a proxy URL/], bad)
    t.notMatch(problems.join('\n'), 's3cret', 'the value is not echoed')
  }
})

t.test('proxy failures name the proxy, never its credentials', async (t) => {
  const proxy = new URL('http://user:s3cret@proxy:3128')
  const target = new URL('https://registry.example/v2/')
  const cases: [unknown, RegExp][] = [
    [Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:3128'), { code: 'ECONNREFUSED' }), /proxy http:\/\/proxy:3128 is unreachable/],
    [new Error('Proxy response (407) !== 200 when HTTP Tunneling'), /refused the credentials/],
    [new Error('Proxy response (403) !== 200 when HTTP Tunneling'), /refused to open a tunnel to registry.example \(403\)/],
    [Object.assign(new Error('Authentication failed'), { code: 'UND_ERR_SOCKS5_AUTH_FAILED' }), /refused the credentials/],
    [Object.assign(new Error('SOCKS5 connection failed: Host unreachable'), { code: 'UND_ERR_SOCKS5_REPLY_4' }), /could not connect/],
  ]
  for (const [err, message] of cases) {
    const e = proxyFailure('registry.example', proxy, target, err)
    t.ok(isRegmirrorError(e, 'UPSTREAM_PROXY'), String(message))
    t.match(e?.message, message)
    t.notMatch(JSON.stringify({ m: e?.message, d: e?.detail }), /s3cret|user@/)
  }
  t.equal(proxyFailure('r', proxy, target, new Error('other side closed')), undefined, 'anything else is an ordinary upstream failure')
})

t.test('a redirect target sent to a proxy is checked against the address policy first', async (t) => {
  // A "proxy" that only counts the connections it gets: a refused target must never reach it.
  const sockets: Socket[] = []
  const server = createServer((s) => {
    sockets.push(s)
    s.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  const names: Record<string, string> = { 'metadata.example': '169.254.169.254', 'cdn.example': '198.51.100.7' }
  const policy = new AddressPolicy('registry.example', [], async (host) => {
    const address = names[host]
    if (!address) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
    return [{ address, family: 4 }]
  })
  const dispatchers = new Dispatchers(proxyEnvironment({}), { connectTimeout: 2000, headersTimeout: 2000, bodyTimeout: 2000 })
  t.teardown(() => dispatchers.close())
  const send = (target: string) => {
    const url = new URL(target)
    const { dispatcher, proxy } = dispatchers.route(`http://127.0.0.1:${port}`, url, policy)
    t.ok(proxy, 'through the proxy')
    return dispatcher.request({ origin: url.origin, path: url.pathname, method: 'GET' })
  }
  await t.rejects(send('http://metadata.example/latest/meta-data/'), { code: 'ADDRESS_DENIED' })
  await t.rejects(send('http://169.254.169.254/latest/'), { code: 'ADDRESS_DENIED' }, 'an IP literal too')
  await t.rejects(send('http://unknown.example/'), { code: 'UPSTREAM_ERROR', message: /cannot resolve unknown.example/ })
  t.equal(sockets.length, 0, 'the proxy was asked for none of them')
  const res = await send('http://cdn.example/blob')
  await res.body.dump()
  t.equal(res.statusCode, 502)
  t.equal(sockets.length, 1, 'a public target goes to the proxy')
})
