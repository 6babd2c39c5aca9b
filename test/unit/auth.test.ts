import t from 'tap'
import { parseChallenges, realmAllowed, registrableDomain } from '../../src/upstream/auth.js'
import { TokenCache, type CachedToken, type SharedTokenStore } from '../../src/upstream/token-store.js'

t.test('WWW-Authenticate parsing', async (t) => {
  t.same(
    parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'),
    [
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ],
  )
  t.same(
    parseChallenges('Bearer realm="r",scope="repository:a:pull,push"')[0]?.params.scope,
    'repository:a:pull,push',
    'commas inside quotes',
  )
  t.same(parseChallenges('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }])
  const two = parseChallenges(['Basic realm="x"', 'Bearer realm="https://a/t",service=s'])
  t.same(
    two.map((c) => c.scheme),
    ['basic', 'bearer'],
  )
  t.equal(two[1]?.params.service, 's', 'unquoted values')
  t.same(parseChallenges(undefined), [])
  t.same(parseChallenges('Bearer realm="a\\"b"')[0]?.params.realm, 'a"b', 'escaped quotes')
})

t.test('token realms are limited to the upstream registrable domain or an allow-list', async (t) => {
  t.equal(registrableDomain('registry-1.docker.io'), 'docker.io')
  t.equal(registrableDomain('auth.example.co.uk'), 'example.co.uk')
  t.ok(realmAllowed('https://registry-1.docker.io', 'https://auth.docker.io/token', []))
  t.notOk(realmAllowed('https://registry-1.docker.io', 'https://evil.example/token', []))
  t.ok(realmAllowed('https://registry-1.docker.io', 'https://login.example.com/token', ['login.example.com']))
  t.notOk(realmAllowed('https://registry-1.docker.io', 'http://auth.docker.io/token', []), 'no downgrade to http')
  t.notOk(realmAllowed('https://ghcr.io', 'file:///etc/passwd', []))
  t.ok(realmAllowed('http://127.0.0.1:5000', 'http://127.0.0.1:6000/token', [], false), 'same IP host, no credentials to send')
  t.notOk(realmAllowed('http://127.0.0.1:5000', 'http://127.0.0.1:6000/token', []), 'same host, another port: no credentials')
  t.notOk(
    realmAllowed('https://registry.example.com', 'https://registry.example.com:8443/token', []),
    'same name, another port: no credentials',
  )
  t.ok(realmAllowed('http://127.0.0.1:5000', 'http://127.0.0.1:5000/token', []), 'same origin')
  t.ok(realmAllowed('https://registry.example.com', 'https://registry.example.com:443/token', []), 'same origin, default port spelled out')
  t.ok(realmAllowed('http://127.0.0.1:5000', 'http://127.0.0.1:6000/token', ['127.0.0.1:6000']), 'listed with its port')
  t.notOk(realmAllowed('http://localhost:5000', 'http://otherhost:5000/token', [], false), 'single-label names share no domain')
  t.notOk(realmAllowed('http://127.0.0.1:5000', 'http://127.0.0.2/token', []))
})

t.test('token cache expiry', async (t) => {
  const c = new TokenCache()
  const k = TokenCache.key('r', 's', 'repository:a:pull')
  await c.set(k, 'tok', 300, 0)
  t.equal(c.peek(k, 1000), 'tok')
  t.equal(c.peek(k, 299_000), undefined, 'renewed before it expires')
  t.equal(c.peek(TokenCache.key('r', 's', 'repository:b:pull'), 1000), undefined, 'scoped')
})

t.test('token cache: a shared store lets another cache find a token, and a refused token is forgotten everywhere', async (t) => {
  const shared = new Map<string, CachedToken>()
  const store: SharedTokenStore = {
    getToken: async (k) => shared.get(k),
    setToken: async (k, v) => void shared.set(k, v),
    deleteToken: async (k) => void shared.delete(k),
  }
  const a = new TokenCache(store)
  const b = new TokenCache(store)
  const k = TokenCache.key('r', 's', 'repository:a:pull')
  await a.set(k, 'tok', 300, 0)
  t.equal(b.peek(k, 1000), undefined, 'not in b yet')
  t.equal(await b.get(k, 1000), 'tok', 'b finds the token a fetched')
  t.equal(b.peek(k, 1000), 'tok', 'and keeps it in process')
  t.equal(await b.get(k, 299_000), undefined, 'an expired shared token is not used')
  await b.reject(k, 'tok')
  t.equal(shared.size, 0, 'the refused token left the shared store')
  t.equal(a.peek(k, 1000), 'tok', 'a still has its copy until the upstream refuses it there too')
  await a.set(k, 'tok2', 300, 0)
  await b.reject(k, 'tok')
  t.equal(shared.get(k)?.token, 'tok2', 'rejecting an old token keeps a newer one')
})
