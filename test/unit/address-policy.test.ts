import type { LookupAddress } from 'node:dns'
import t from 'tap'
import { AddressPolicy, classify } from '../../src/upstream/address-policy.js'
import { isRegmirrorError } from '../../src/errors.js'

t.test('address classes', async (t) => {
  const cases: [string, string][] = [
    ['127.0.0.1', 'loopback'],
    ['127.8.9.10', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['::ffff:10.0.0.1', 'private'],
    ['fd00::2', 'unique-local'],
    ['fc12::1', 'unique-local'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['8.8.8.8', 'public'],
    ['172.32.0.1', 'public'],
    ['192.0.2.2', 'public'],
    ['2001:db8::1', 'public'],
  ]
  for (const [ip, cls] of cases) t.equal(classify(ip), cls, ip)
})

/** A resolver answering from a table that a test can change between calls (DNS rebinding). */
function resolver(table: Record<string, string[]>) {
  return async (host: string): Promise<LookupAddress[]> => {
    const a = table[host]
    if (!a) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
    return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
}

const denied = async (p: Promise<unknown>) => {
  try {
    await p
    return false
  } catch (err) {
    return isRegmirrorError(err, 'ADDRESS_DENIED')
  }
}

t.test('public upstream: only public targets; its own class opens for an upstream that lives there', async (t) => {
  const table = { 'registry.example': ['203.0.113.5'], 'cdn.example': ['198.51.100.7'], 'internal.example': ['10.0.0.9'] }
  const pub = new AddressPolicy('registry.example', [], resolver(table))
  await t.resolves(pub.check('198.51.100.7', 'cdn.example'))
  t.ok(await denied(pub.check('127.0.0.1', 'x')))
  t.ok(await denied(pub.check('169.254.169.254', 'x')))
  t.ok(await denied(pub.check('10.0.0.9', 'x')))
  t.ok(await denied(pub.check('::ffff:192.168.0.1', 'x')), 'IPv4-mapped IPv6 is its IPv4 address')

  const priv = new AddressPolicy('10.0.0.5', [], resolver(table))
  await t.resolves(priv.check('10.0.0.9', 'store'), 'a private upstream may redirect within private space')
  t.ok(await denied(priv.check('127.0.0.1', 'x')), 'but not to loopback')
  t.ok(await denied(priv.check('169.254.169.254', 'x')), 'nor to link-local')

  const allowed = new AddressPolicy('registry.example', ['127.0.0.0/8', 'fd00::/8'], resolver(table))
  await t.resolves(allowed.check('127.0.0.1', 'x'))
  await t.resolves(allowed.check('fd00::5', 'x'))
  t.ok(await denied(allowed.check('fe80::1', 'x')))
})

t.test('the lookup checks every address a name resolves to, each time it is dialled', async (t) => {
  const table: Record<string, string[]> = { 'registry.example': ['203.0.113.5'], 'cdn.example': ['198.51.100.7'] }
  const p = new AddressPolicy('registry.example', [], resolver(table))
  const lookup = (host: string, all: boolean) =>
    new Promise<unknown>((resolve, reject) =>
      p.lookup(host, { all }, (err: NodeJS.ErrnoException | null, address: unknown) => (err ? reject(err) : resolve(address))),
    )
  t.equal(await lookup('cdn.example', false), '198.51.100.7')
  t.same(await lookup('cdn.example', true), [{ address: '198.51.100.7', family: 4 }])
  table['cdn.example'] = ['198.51.100.7', '127.0.0.1']
  t.ok(await denied(lookup('cdn.example', true)), 'one internal address among public ones is refused')
  table['cdn.example'] = ['169.254.169.254']
  t.ok(await denied(lookup('cdn.example', false)), 'a name that now resolves elsewhere is checked again')
  await t.rejects(lookup('nowhere.example', false), { code: 'ENOTFOUND' })
})

t.test('networks that are not CIDR are refused', async (t) => {
  for (const bad of ['10.0.0.0/33', 'fd00::/129', 'example.com/8', '10.0.0.0/8/8', '10.0.0.0/x', '']) {
    t.throws(() => new AddressPolicy('h', [bad]), bad)
  }
})
