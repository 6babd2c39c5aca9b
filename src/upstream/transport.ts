import type { Config } from '../config/schema.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { AddressPolicy } from './address-policy.js'
import { toUpstreamError, type Headers } from './answers.js'
import { describeProxy, Dispatchers, proxyEnvironment, proxyFailure } from './proxy.js'
import { MIN_THROUGHPUT_SAMPLE, type Endpoint } from './pool.js'

/**
 * One HTTP exchange with an endpoint or a host it sends the mirror to (a redirect target, a token
 * realm): the way out (direct or through a proxy, proxy.ts), the address policy for every origin
 * but the endpoint's own, timeouts, and the upstream and endpoint metrics and measurements.
 */
export class Transport {
  private readonly dispatchers: Dispatchers
  /** Per endpoint: what its redirect targets and token realms may reach. */
  private readonly policies = new Map<string, AddressPolicy>()

  constructor(
    private readonly config: Config,
    log: Logger,
    private readonly metrics: Metrics,
    environment: Record<string, string | undefined>,
  ) {
    const env = proxyEnvironment(environment)
    this.dispatchers = new Dispatchers(env, {
      connectTimeout: config.timeouts.connect,
      headersTimeout: config.timeouts.headers,
      bodyTimeout: config.timeouts.bodyIdle,
    })
    // What goes where, said once: an operator reading the log knows which proxy each upstream's requests use.
    if (env.invalid.length > 0) log.warn({ variables: env.invalid }, 'proxy environment variables that are not proxy URLs are ignored')
    if (env.http || env.https) {
      const show = (u: URL | undefined) => (u ? describeProxy(u) : undefined)
      log.info(
        { httpsProxy: show(env.https), httpProxy: show(env.http), noProxy: env.noProxy.text },
        'outbound proxies from the environment',
      )
    }
    for (const up of config.upstreams) {
      if (up.proxy === undefined) continue
      log.info({ upstream: up.name, proxy: up.proxy === 'none' ? 'none' : describeProxy(new URL(up.proxy)) }, 'upstream proxy')
    }
  }

  close(): Promise<void> {
    return this.dispatchers.close()
  }

  async send(ep: Endpoint, url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>) {
    const up = ep.up
    const labels = endpointLabels(ep)
    const started = process.hrtime.bigint()
    const route = this.dispatchers.route(ep.config.proxy ?? up.proxy, url, url.origin === ep.origin ? undefined : this.policyOf(ep))
    try {
      const res = await route.dispatcher.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method,
        headers,
        // Per request too: the SOCKS5 agent's connections take no agent-wide timeouts.
        headersTimeout: this.config.timeouts.headers,
        bodyTimeout: this.config.timeouts.bodyIdle,
      })
      if (route.proxy && res.statusCode === 407) {
        // A plain-HTTP request the proxy refused: its answer, not the upstream's.
        await res.body.dump().catch(() => {})
        throw Object.assign(new Error('Proxy Authentication Required (407)'), { code: 'PROXY_407' })
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      this.metrics.upstreamRequests.inc({ upstream: up.name, status: String(res.statusCode) })
      this.metrics.upstreamDuration.observe({ upstream: up.name }, seconds)
      this.metrics.endpointRequests.inc({ ...labels, status: String(res.statusCode) })
      this.metrics.endpointDuration.observe(labels, seconds)
      ep.noteLatency(seconds)
      const body = res.body
      // Paused first: a 'data' listener on a stream not explicitly paused switches it to flowing
      // mode, and whatever arrives before the caller starts reading (say, while a fill awaits
      // eviction) would be lost. read(), async iteration, pipe and dump still emit 'data'.
      body.pause()
      let bytes = 0
      let first: bigint | undefined
      body.on('data', (chunk: Buffer) => {
        first ??= process.hrtime.bigint()
        bytes += chunk.length
        this.metrics.upstreamBytes.inc({ upstream: up.name }, chunk.length)
        this.metrics.endpointBytes.inc(labels, chunk.length)
      })
      body.on('end', () => {
        if (first === undefined || bytes < MIN_THROUGHPUT_SAMPLE) return
        ep.noteThroughput(bytes, Number(process.hrtime.bigint() - first) / 1e9)
        if (ep.throughput !== undefined) this.metrics.endpointThroughput.set(labels, ep.throughput)
      })
      // A body given up before anyone read it (destroyed on a refusal, or left behind) emits
      // 'error'; readers still see it through their own listeners, but it must never be uncaught.
      body.on('error', () => {})
      return { status: res.statusCode, headers: res.headers as Headers, body }
    } catch (err) {
      this.metrics.upstreamRequests.inc({ upstream: up.name, status: '0' })
      this.metrics.endpointRequests.inc({ ...labels, status: '0' })
      throw (route.proxy && proxyFailure(up.name, route.proxy, url, err)) || toUpstreamError(up, err)
    }
  }

  /** The address policy of an endpoint's redirect targets and token realms; its own address is exempt. */
  private policyOf(ep: Endpoint): AddressPolicy {
    let policy = this.policies.get(ep.key)
    if (!policy) this.policies.set(ep.key, (policy = new AddressPolicy(new URL(ep.config.url).hostname, ep.config.allowedNetworks)))
    return policy
  }
}

/** How metrics and logs name an endpoint: its URL as configured (origin and path; URLs never hold credentials). */
export function endpointLabels(ep: Endpoint): { upstream: string; endpoint: string } {
  return { upstream: ep.up.name, endpoint: ep.label }
}
