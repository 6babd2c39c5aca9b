import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { addNetwork } from '../cidr.js'
import { RegmirrorError } from '../errors.js'

/** Address ranges a redirect or a token realm may not reach unless the upstream itself lives there. */
export type AddressClass = 'public' | 'unspecified' | 'loopback' | 'link-local' | 'private' | 'unique-local'

const RANGES: [Exclude<AddressClass, 'public'>, string, number, 'ipv4' | 'ipv6'][] = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['loopback', '::1', 128, 'ipv6'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  // Carrier-grade NAT: not the public internet either.
  ['private', '100.64.0.0', 10, 'ipv4'],
  ['unique-local', 'fc00::', 7, 'ipv6'],
]

const CLASSES = new Map<Exclude<AddressClass, 'public'>, BlockList>()
for (const [cls, net, prefix, family] of RANGES) {
  let list = CLASSES.get(cls)
  if (!list) CLASSES.set(cls, (list = new BlockList()))
  list.addSubnet(net, prefix, family)
}

/** The class of an IP address (IPv4-mapped IPv6 addresses count as their IPv4 address). */
export function classify(ip: string): AddressClass {
  const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4'
  for (const [cls, list] of CLASSES) if (list.check(ip, family)) return cls
  return 'public'
}

type Resolver = (host: string) => Promise<LookupAddress[]>

const systemResolver: Resolver = (host) =>
  new Promise((resolve, reject) => dnsLookup(host, { all: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))))

const OWN_CLASSES_TTL_MS = 60_000

/**
 * Which addresses one upstream's redirect targets and token realms may connect to. Public
 * addresses always; loopback, link-local, private and unique-local ones only in a class the
 * upstream's own address is in (a registry on 10.0.0.5 may send blobs to a store on 10.0.0.9)
 * or in a network the operator allowed. Checked on the address actually dialled, through the
 * connection's DNS lookup, so a name that resolves to 169.254.169.254 is caught, and so is a
 * name that resolves differently the second time.
 */
export class AddressPolicy {
  private readonly allowed = new BlockList()
  private own: { classes: Set<AddressClass>; until: number } | undefined

  constructor(
    private readonly upstreamHost: string,
    allowedNetworks: readonly string[],
    private readonly resolve: Resolver = systemResolver,
  ) {
    for (const n of allowedNetworks) addNetwork(this.allowed, n)
  }

  /** Throws ADDRESS_DENIED unless `ip` may be dialled. */
  async check(ip: string, host: string): Promise<void> {
    const cls = classify(ip)
    if (cls === 'public') return
    if (this.allowed.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4')) return
    if ((await this.ownClasses()).has(cls)) return
    throw new RegmirrorError('ADDRESS_DENIED', `refused to connect to ${host}: it resolves to a ${cls} address`, {
      detail: { host: host.slice(0, 200), class: cls },
    })
  }

  /**
   * Throws ADDRESS_DENIED unless every address `host` resolves to may be dialled. For a target sent to a proxy,
   * which dials it instead of us: the name is resolved here, and the proxy may resolve it again (a window the
   * direct path, which checks the address it connects to, does not have). A name that does not resolve here
   * is refused: it cannot be checked.
   */
  async checkName(host: string): Promise<void> {
    const bare = host.replace(/^\[|\]$/g, '')
    if (isIP(bare) !== 0) return this.check(bare, bare)
    let addrs: LookupAddress[]
    try {
      addrs = await this.resolve(bare)
    } catch (err) {
      throw new RegmirrorError('UPSTREAM_ERROR', `cannot resolve ${bare.slice(0, 200)} to check it against the address policy`, {
        cause: err,
        detail: { host: bare.slice(0, 200) },
      })
    }
    if (addrs.length === 0) throw new RegmirrorError('UPSTREAM_ERROR', `no address for ${bare.slice(0, 200)}`)
    for (const a of addrs) await this.check(a.address, bare)
  }

  private async ownClasses(now = Date.now()): Promise<Set<AddressClass>> {
    if (this.own && this.own.until > now) return this.own.classes
    const host = this.upstreamHost.replace(/^\[|\]$/g, '')
    let addrs: string[]
    try {
      addrs = isIP(host) ? [host] : (await this.resolve(host)).map((a) => a.address)
    } catch {
      // The upstream cannot be resolved right now: only public targets, and ask again next time.
      return new Set()
    }
    const classes = new Set(addrs.map(classify))
    this.own = { classes, until: now + OWN_CLASSES_TTL_MS }
    return classes
  }

  /** A `lookup` for net/tls connect options: resolves, then refuses unless every address passes. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all === true
    this.resolve(hostname)
      .then(async (addrs) => {
        for (const a of addrs) await this.check(a.address, hostname)
        return addrs
      })
      .then(
        (addrs) => {
          const first = addrs[0]
          if (all) (callback as (e: null, a: LookupAddress[]) => void)(null, addrs)
          else if (first) callback(null, first.address, first.family)
          else callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0)
        },
        (err: NodeJS.ErrnoException) => callback(err, '', 0),
      )
  }
}
