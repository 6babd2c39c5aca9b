/**
 * Outbound proxies: which proxy, if any, a request to an upstream goes through, and the undici dispatcher that
 * sends it there. The rules for the environment are Go's (golang.org/x/net/http/httpproxy, what Docker, containerd
 * and every Go tool on the same host follow), so one `HTTPS_PROXY`/`NO_PROXY` means the same to all of them. undici's
 * EnvHttpProxyAgent reads the same variables differently (no CIDRs in NO_PROXY, `.example.com` also matches
 * `example.com`, loopback proxied, HTTPS falls back to HTTP_PROXY, lower case first), hence this module.
 */
import { BlockList, isIP } from 'node:net'
import { domainToASCII } from 'node:url'
import { Agent, Pool, ProxyAgent, Socks5ProxyAgent, buildConnector, type Dispatcher } from 'undici'
import { PROXY_SCHEMES } from '../config/parse.js'
import { RegmirrorError } from '../errors.js'
import type { AddressPolicy } from './address-policy.js'

/** The proxies the environment names, read once at start as Go reads them. */
export interface ProxyEnvironment {
  http?: URL
  https?: URL
  noProxy: NoProxy
  /** Variables that are set but hold no usable proxy URL: ignored, as Go ignores them. */
  invalid: string[]
}

/** `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`, upper case first, an empty value counting as unset. */
export function proxyEnvironment(env: Record<string, string | undefined>): ProxyEnvironment {
  const get = (...names: string[]) => {
    for (const n of names) {
      const v = env[n]
      if (v !== undefined && v !== '') return { name: n, value: v }
    }
    return undefined
  }
  const invalid: string[] = []
  const proxy = (...names: string[]) => {
    const v = get(...names)
    if (!v) return undefined
    const u = parseEnvProxy(v.value)
    if (!u) invalid.push(v.name)
    return u
  }
  return {
    http: proxy('HTTP_PROXY', 'http_proxy'),
    https: proxy('HTTPS_PROXY', 'https_proxy'),
    noProxy: new NoProxy(get('NO_PROXY', 'no_proxy')?.value ?? ''),
    invalid,
  }
}

/** A proxy URL from the environment: as given, or as `http://` + the value when that is what parses (`proxy:3128`). */
function parseEnvProxy(value: string): URL | undefined {
  const usable = (s: string): URL | undefined => {
    try {
      const u = new URL(s)
      return (PROXY_SCHEMES as readonly string[]).includes(u.protocol) && u.hostname !== '' ? u : undefined
    } catch {
      return undefined
    }
  }
  return usable(value) ?? usable(`http://${value}`)
}

/**
 * The proxy for a request to `target`: an upstream's own `proxy` setting (`none`: no proxy) wins over the
 * environment and applies to every target, loopback included; the environment's proxy applies unless the
 * target is loopback, `localhost` or matched by NO_PROXY.
 */
export function proxyFor(setting: string | undefined, target: URL, env: ProxyEnvironment): URL | undefined {
  if (setting === 'none') return undefined
  if (setting !== undefined) return new URL(setting)
  const proxy = target.protocol === 'https:' ? env.https : target.protocol === 'http:' ? env.http : undefined
  if (!proxy) return undefined
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase()
  const port = target.port || (target.protocol === 'https:' ? '443' : '80')
  if (host === 'localhost' || isLoopback(host)) return undefined
  return env.noProxy.matches(host, port) ? undefined : proxy
}

/** A proxy as logs and errors name it: scheme, host and port, never its user name or password. */
export function describeProxy(proxy: URL): string {
  return `${proxy.protocol}//${proxy.host}`
}

function isLoopback(ip: string): boolean {
  const family = isIP(ip)
  if (family === 0) return false
  return LOOPBACK.check(ip, family === 4 ? 'ipv4' : 'ipv6')
}

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/**
 * NO_PROXY: comma-separated `*`, IP addresses and CIDR networks, domain names (`example.com` matches it and its
 * subdomains, `.example.com` and `*.example.com` only subdomains), each but CIDRs with an optional `:port`. IP
 * entries match IP-literal targets only: names are not resolved. Malformed entries are skipped, as in Go.
 */
export class NoProxy {
  private all = false
  private readonly networks = new BlockList()
  private readonly ips: { ip: string; port: string }[] = []
  private readonly domains: { suffix: string; exact: boolean; port: string }[] = []

  constructor(readonly text: string) {
    for (const raw of text.split(',')) {
      const p = raw.trim().toLowerCase()
      if (p === '') continue
      if (p === '*') {
        this.all = true
        return
      }
      if (this.addNetwork(p)) continue
      const [given, port] = splitHostPort(p) ?? [p, '']
      let host = given
      if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
      if (host === '') continue
      if (isIP(host) !== 0) {
        this.ips.push({ ip: host, port })
        continue
      }
      if (host.startsWith('*.')) host = host.slice(1)
      const exact = !host.startsWith('.')
      if (exact) host = `.${host}`
      const ascii = domainToASCII(host.slice(1))
      this.domains.push({ suffix: ascii ? `.${ascii}` : host, exact, port })
    }
  }

  private addNetwork(p: string): boolean {
    const slash = p.indexOf('/')
    if (slash < 0) return false
    const addr = p.slice(0, slash)
    const bits = p.slice(slash + 1)
    const family = isIP(addr)
    if (family === 0 || !/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) return false
    this.networks.addSubnet(addr, Number(bits), family === 4 ? 'ipv4' : 'ipv6')
    return true
  }

  /** Whether a request to `host` (lower case, no brackets) on `port` goes direct. */
  matches(host: string, port: string): boolean {
    if (this.all) return true
    const family = isIP(host)
    if (family !== 0) {
      const type = family === 4 ? 'ipv4' : 'ipv6'
      if (this.networks.check(host, type)) return true
      for (const e of this.ips) if (sameIp(e.ip, host) && (e.port === '' || e.port === port)) return true
    }
    for (const d of this.domains) {
      if (host.endsWith(d.suffix) || (d.exact && host === d.suffix.slice(1))) {
        if (d.port === '' || d.port === port) return true
      }
    }
    return false
  }
}

function sameIp(a: string, b: string): boolean {
  const list = new BlockList()
  list.addAddress(a, isIP(a) === 4 ? 'ipv4' : 'ipv6')
  return list.check(b, isIP(b) === 4 ? 'ipv4' : 'ipv6')
}

/** Go's net.SplitHostPort, near enough: `host:port` or `[v6]:port`; undefined when there is no single port. */
function splitHostPort(s: string): [string, string] | undefined {
  if (s.startsWith('[')) {
    const m = /^(\[[^\]]*\]):([^:]*)$/.exec(s)
    return m ? [m[1]!, m[2]!] : undefined
  }
  const i = s.indexOf(':')
  if (i < 0 || s.indexOf(':', i + 1) >= 0) return undefined
  return [s.slice(0, i), s.slice(i + 1)]
}

export interface DispatcherOptions {
  connectTimeout: number
  headersTimeout: number
  bodyTimeout: number
}

/** What a request is sent with: the dispatcher, and the proxy it goes through (for errors), if any. */
export interface Route {
  dispatcher: Dispatcher
  proxy?: URL
}

/**
 * The dispatchers of every outbound request to an upstream, one per way out: direct, or through each proxy.
 * `route(setting, target, policy)` gives the one for a request; a `policy` (for targets other than the upstream's
 * own origin: redirect targets, token realms) is applied on the addresses dialled when going direct, and on the
 * target's resolved addresses before it is handed to a proxy.
 */
export class Dispatchers {
  private readonly direct: Agent
  private readonly guardedDirect = new Map<AddressPolicy, Agent>()
  private readonly proxies = new Map<string, Dispatcher>()
  private readonly guardedProxies = new Map<AddressPolicy, Map<string, Dispatcher>>()

  constructor(
    private readonly env: ProxyEnvironment,
    private readonly opts: DispatcherOptions,
  ) {
    this.direct = new Agent({ ...this.agentOptions(), connect: { timeout: opts.connectTimeout } })
  }

  route(setting: string | undefined, target: URL, policy?: AddressPolicy): Route {
    const proxy = proxyFor(setting, target, this.env)
    if (!proxy) return { dispatcher: policy ? this.guardedDirectAgent(policy) : this.direct }
    if (!policy) return { dispatcher: this.viaProxy(proxy), proxy }
    let perProxy = this.guardedProxies.get(policy)
    if (!perProxy) this.guardedProxies.set(policy, (perProxy = new Map()))
    let d = perProxy.get(proxy.href)
    if (!d) perProxy.set(proxy.href, (d = this.viaProxy(proxy).compose(guard(policy))))
    return { dispatcher: d, proxy }
  }

  async close(): Promise<void> {
    await Promise.all([this.direct, ...this.guardedDirect.values(), ...this.proxies.values()].map((d) => d.close()))
  }

  private guardedDirectAgent(policy: AddressPolicy): Agent {
    let agent = this.guardedDirect.get(policy)
    if (!agent) {
      const dial = buildConnector({ timeout: this.opts.connectTimeout, lookup: policy.lookup })
      // An IP literal never goes through `lookup`: check it here.
      const connect: buildConnector.connector = (o, cb) => {
        const host = o.hostname.replace(/^\[|\]$/g, '')
        if (isIP(host) === 0) return dial(o, cb)
        policy.check(host, host).then(
          () => dial(o, cb),
          (err: Error) => cb(err, null),
        )
      }
      agent = new Agent({ ...this.agentOptions(), connect })
      this.guardedDirect.set(policy, agent)
    }
    return agent
  }

  private viaProxy(proxy: URL): Dispatcher {
    let d = this.proxies.get(proxy.href)
    if (d) return d
    if (proxy.protocol === 'socks5:' || proxy.protocol === 'socks5h:') {
      // undici sends the target's name to the proxy (SOCKS5 "domain name" address): socks5h's meaning either way.
      const url = new URL(proxy.href)
      url.protocol = 'socks5:'
      d = new Socks5ProxyAgent(url.href, { connect: buildConnector({ timeout: this.opts.connectTimeout }) })
    } else {
      d = new ProxyAgent({
        ...this.agentOptions(),
        uri: proxy.href,
        // http:// targets are sent to the proxy as absolute-form requests, as Go does (and as proxies allow by
        // default: squid refuses CONNECT to any port but 443); https:// targets go through a CONNECT tunnel.
        proxyTunnel: false,
        proxyTls: { timeout: this.opts.connectTimeout },
        // The connection to the proxy itself, for CONNECT: a proxy that never answers it is a timeout, not a hang.
        clientFactory: (origin, o) => new Pool(origin, { ...o, headersTimeout: this.opts.headersTimeout }),
      })
    }
    this.proxies.set(proxy.href, d)
    return d
  }

  private agentOptions() {
    return {
      headersTimeout: this.opts.headersTimeout,
      bodyTimeout: this.opts.bodyTimeout,
      keepAliveTimeout: 30_000,
      connections: 64,
    }
  }
}

/** An interceptor that refuses a target the address policy does not allow, before the proxy is asked for it. */
function guard(policy: AddressPolicy): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const origin = new URL(String(opts.origin))
    policy.checkName(origin.hostname).then(
      () => dispatch(opts, handler),
      (err: Error) => handler.onResponseError?.(null as never, err),
    )
    return true
  }
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

/**
 * A request through `proxy` that failed before an answer: the proxy unreachable, refusing the credentials, or
 * refusing or failing to reach the target. Named by `describeProxy`, never with its credentials. Our own errors
 * (an address the policy refused) pass through; undefined for anything else (a timeout of the answer, a cut).
 */
export function proxyFailure(upstream: string, proxy: URL, target: URL, err: unknown): RegmirrorError | undefined {
  if (err instanceof RegmirrorError) return err
  const e = err as { code?: string; message?: string; name?: string } | undefined
  const code = e?.code ?? ''
  const message = e?.message ?? ''
  const via = describeProxy(proxy)
  const make = (why: string) =>
    new RegmirrorError('UPSTREAM_PROXY', `upstream ${upstream} failed: proxy ${via} ${why}`, {
      cause: err,
      detail: { upstream, proxy: via },
    })
  const status = /Proxy response \((\d{3})\)/.exec(message)?.[1] ?? (/\(407\)/.test(message) ? '407' : undefined)
  if (status === '407' || code === 'UND_ERR_SOCKS5_AUTH_FAILED' || code === 'UND_ERR_SOCKS5_AUTH_REJECTED')
    return make('refused the credentials (407 or SOCKS5 authentication failure)')
  if (/Username and password required/.test(message)) return make('requires credentials')
  if (status !== undefined) return make(`refused to open a tunnel to ${target.host} (${status})`)
  if (code.startsWith('UND_ERR_SOCKS5_REPLY')) return make(`could not connect to ${target.host} (${message.slice(0, 100)})`)
  if (code.startsWith('UND_ERR_SOCKS5') || /^SOCKS5 /.test(message)) return make(`failed the SOCKS5 exchange (${message.slice(0, 100)})`)
  if (CONNECT_FAILURES.has(code)) return make(`is unreachable (${code})`)
  return undefined
}
