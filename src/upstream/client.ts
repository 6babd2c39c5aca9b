import type { Config, UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { AddressPolicy } from './address-policy.js'
import { header, readBounded, toUpstreamError, type Headers, type UpstreamResponse } from './answers.js'
import { describeProxy, Dispatchers, proxyEnvironment, proxyFailure } from './proxy.js'
import { MIN_THROUGHPUT_SAMPLE, EndpointPool, type Endpoint } from './pool.js'
import { TokenAuth } from './token-auth.js'
import { TokenCache, type SharedTokenStore } from './token-store.js'

export { contentLength, header, upstreamFailure, type Headers, type UpstreamResponse } from './answers.js'
export type { Endpoint } from './pool.js'

export interface UpstreamRequest {
  method: 'GET' | 'HEAD'
  /** Path under the API's base URL, e.g. `/v2/library/alpine/manifests/3.20`; an endpoint's name prefix goes after `/v2/`. */
  path: string
  /** Repository, for the token scope. */
  repo?: string
  headers?: Record<string, string>
  /** Retry on connection errors and 502/503/504 (only while nothing was sent to a client). */
  retry?: boolean
  /**
   * The answer is checked against a digest the mirror already has: any endpoint may give it, fastest
   * first. `blob` for a blob's body; `small` for a manifest or a HEAD, which also measures endpoints
   * not measured yet. Without it, endpoints are asked in trust order.
   */
  byDigest?: 'blob' | 'small'
}

/** How a request ranks the endpoints (pool.ts `order`). */
function orderFor(req: UpstreamRequest): 'trust' | 'fastest' | 'explore' {
  if (req.byDigest === undefined) return 'trust'
  return req.byDigest === 'small' || req.method === 'HEAD' ? 'explore' : 'fastest'
}

const MAX_REDIRECTS = 5
const REDIRECTS = new Set([301, 302, 303, 307, 308])
/** Answers one endpoint may give while another has the content (a mirror that serves only some images). */
const ASK_NEXT = new Set([401, 403, 404])

/**
 * Every request to an upstream registry goes through here: the choice of endpoint (pool.ts), auth
 * (token-auth.ts), redirects (credentials never follow to another origin; other origins only
 * where the endpoint's address policy allows), outbound proxies (proxy.ts), timeouts, retries with
 * backoff, failover to the next endpoint, offline marking (health.ts), and the upstream and endpoint metrics.
 */
export class UpstreamClient {
  private readonly dispatchers: Dispatchers
  /** Per endpoint: what its redirect targets and token realms may reach. */
  private readonly policies = new Map<string, AddressPolicy>()
  private readonly pools = new Map<string, EndpointPool>()
  private readonly auth: TokenAuth

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    opts: { sharedTokens?: SharedTokenStore; env?: Record<string, string | undefined> } = {},
  ) {
    this.auth = new TokenAuth(
      new TokenCache(opts.sharedTokens),
      (ep, url, h) => this.send(ep, url, 'GET', h),
      log,
      config.timeouts.bodyIdle,
    )
    const env = proxyEnvironment(opts.env ?? process.env)
    this.dispatchers = new Dispatchers(env, {
      connectTimeout: config.timeouts.connect,
      headersTimeout: config.timeouts.headers,
      bodyTimeout: config.timeouts.bodyIdle,
    })
    for (const up of config.upstreams) {
      this.metrics.upstreamOnline.set({ upstream: up.name }, 1)
      for (const ep of this.poolOf(up).endpoints) this.metrics.endpointUp.set(endpointLabels(ep), 1)
    }
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

  /** The upstream's endpoints with their health and measurements. */
  poolOf(up: UpstreamConfig): EndpointPool {
    let pool = this.pools.get(up.name)
    if (!pool) {
      pool = new EndpointPool(up, {
        threshold: this.config.offline.failureThreshold,
        coolDown: this.config.offline.coolDown,
        onEndpoint: (ep, online) => {
          this.metrics.endpointUp.set(endpointLabels(ep), online ? 1 : 0)
          // With one endpoint, the upstream's own line below says it all.
          if (this.poolOf(up).size === 1) return
          // What was measured of it, for the operator deciding whether it belongs in the pool.
          const health = {
            upstream: up.name,
            endpoint: ep.label,
            latencyMs: ep.latency === undefined ? undefined : Math.round(ep.latency * 1000),
            bytesPerSecond: ep.throughput === undefined ? undefined : Math.round(ep.throughput),
          }
          if (online) this.log.info(health, 'endpoint is back')
          else this.log.warn({ ...health, coolDownMs: this.config.offline.coolDown }, 'endpoint set aside')
        },
        onUpstream: (online) => {
          this.metrics.upstreamOnline.set({ upstream: up.name }, online ? 1 : 0)
          if (online) this.log.info({ upstream: up.name }, 'upstream is back online')
          else this.log.warn({ upstream: up.name, coolDownMs: this.config.offline.coolDown }, 'upstream marked offline')
        },
      })
      this.pools.set(up.name, pool)
    }
    return pool
  }

  /**
   * A body from `endpoint` broke off: the next request (the fill's resume) goes to another
   * endpoint if one is up.
   */
  bodyFailed(endpoint: Endpoint): void {
    this.poolOf(endpoint.up).bodyFailed(endpoint)
  }

  async close(): Promise<void> {
    await this.dispatchers.close()
  }

  /**
   * Reads a small upstream body (manifest, tag list) whole, within `limit` bytes and, from its
   * first byte to its last, within the body idle timeout.
   */
  readSmall(up: UpstreamConfig, res: Pick<UpstreamResponse, 'body'>, limit: number, tooLarge: () => Error): Promise<Buffer> {
    return readBounded(up, res, limit, tooLarge, this.config.timeouts.bodyIdle)
  }

  /**
   * Asks the upstream's endpoints in turn (trust order, or fastest first `byDigest`) until one
   * answers; an endpoint that fails is set aside and the next asked at once. A round that found
   * no answer is repeated after a backoff, up to `retries.attempts` rounds. When every endpoint
   * is down, fails at once with UPSTREAM_OFFLINE and a Retry-After.
   */
  async request(up: UpstreamConfig, req: UpstreamRequest): Promise<UpstreamResponse> {
    // The last guard of offline mode: nothing, not even a token request, leaves for this upstream.
    if (up.offline)
      throw new RegmirrorError('UPSTREAM_NOT_CONTACTED', `upstream ${up.name} is offline by configuration`, {
        detail: { upstream: up.name },
      })
    const pool = this.poolOf(up)
    const attempts = req.retry === false ? 1 : Math.max(1, this.config.retries.attempts)
    let lastErr: unknown
    // The answer to return if no endpoint does better (a 404 here, a 503 there); its body is still unread.
    let kept: UpstreamResponse | undefined
    const keep = (res: UpstreamResponse | undefined) => {
      kept?.body.dump().catch(() => {})
      kept = res
    }
    let asked = false
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(backoff(this.config.retries.backoff, attempt))
      let again = false
      for (const ep of pool.order(orderFor(req))) {
        const admission = ep.health.admit()
        if (!admission.ok) continue
        asked = true
        try {
          const res = await this.requestOnce(ep, req)
          if (res.status < 500 && res.status !== 429) {
            pool.success(ep, admission)
            if (ASK_NEXT.has(res.status) && pool.size > 1) {
              keep(res)
              continue
            }
            keep(undefined)
            this.noteAnswer(ep, req, res)
            return res
          }
          pool.failure(ep)
          keep(res)
          again ||= [502, 503, 504].includes(res.status)
        } catch (err) {
          lastErr = err
          // The endpoint answered, wrongly or with a refusal: it is reachable, and asking it again
          // would get the same answer. Another endpoint may answer better.
          if (err instanceof RegmirrorError && err.class !== 'upstream') pool.success(ep, admission)
          else {
            pool.failure(ep)
            again = true
          }
        } finally {
          // Whatever happened, a probe has had its outcome: an endpoint never stays down because
          // the one request allowed through ended in a way the loop does not count.
          ep.health.settleProbe(admission)
        }
      }
      if (!asked) {
        // Retry-After tells clients (and CI retry loops) when asking again can make a difference.
        throw new RegmirrorError('UPSTREAM_OFFLINE', `upstream ${up.name} is offline`, {
          detail: { upstream: up.name },
          retryAfter: String(pool.retryAfterSeconds()),
        })
      }
      if (!again || pool.offline) break
    }
    if (kept) return kept
    throw lastErr
  }

  /** An answer to a mutable request (a tag) from an endpoint the configuration does not trust with those: logged and counted. */
  private noteAnswer(ep: Endpoint, req: UpstreamRequest, res: UpstreamResponse): void {
    if (req.byDigest || ep.config.trusted) return
    this.metrics.untrustedAnswers.inc(endpointLabels(ep))
    this.log.warn(
      { upstream: ep.up.name, endpoint: ep.label, path: req.path.slice(0, 300), status: res.status },
      'answer from an untrusted endpoint: no trusted endpoint answered',
    )
  }

  private async requestOnce(ep: Endpoint, req: UpstreamRequest): Promise<UpstreamResponse> {
    const base = new URL(ep.config.base)
    const repo = req.repo === undefined ? undefined : ep.config.prefix + req.repo
    const scope = repo ? `repository:${repo}:pull` : undefined
    let auth = await this.auth.upFront(ep, scope)
    const path = req.path.startsWith('/v2/') ? `/v2/${ep.config.prefix}${req.path.slice('/v2/'.length)}` : req.path
    let url = new URL(base.pathname.replace(/\/$/, '') + path, base)
    let triedAuth = false
    const seen = new Set<string>()
    for (;;) {
      const sameOrigin = url.origin === ep.origin
      const headers: Record<string, string> = { 'user-agent': 'regmirror', ...req.headers }
      if (auth && sameOrigin) headers.authorization = auth
      const res = await this.send(ep, url, req.method, headers)
      if (res.status === 401 && sameOrigin && !triedAuth) {
        triedAuth = true
        const challenge = header(res.headers, 'www-authenticate')
        await res.body.dump().catch(() => {})
        const refused = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined
        auth = await this.auth.authorize(ep, challenge, scope, refused)
        if (auth === undefined) {
          throw new RegmirrorError('UNAUTHORIZED', `upstream ${ep.up.name} requires authentication`, { detail: { upstream: ep.up.name } })
        }
        continue
      }
      if (!REDIRECTS.has(res.status)) return { ...res, where: url.origin + url.pathname, endpoint: ep }
      const location = header(res.headers, 'location')
      await res.body.dump().catch(() => {})
      const target = redirectTarget(ep.up, url, location)
      if (seen.has(target.href) || seen.size >= MAX_REDIRECTS) {
        throw new RegmirrorError('REDIRECT_INVALID', `too many redirects or a redirect loop from ${ep.up.name}`)
      }
      seen.add(url.href)
      url = target
    }
  }

  private async send(ep: Endpoint, url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>) {
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
      this.noteRateLimit(up, res.headers as Headers)
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

  private noteRateLimit(up: UpstreamConfig, headers: Headers): void {
    const remaining = header(headers, 'ratelimit-remaining')
    if (remaining === undefined) return
    const n = Number.parseInt(remaining, 10)
    if (!Number.isFinite(n)) return
    this.metrics.rateLimitRemaining.set({ upstream: up.name }, n)
    this.log.info({ upstream: up.name, ratelimitRemaining: n, ratelimitLimit: header(headers, 'ratelimit-limit') }, 'upstream rate limit')
  }

  /** The address policy of an endpoint's redirect targets and token realms; its own address is exempt. */
  private policyOf(ep: Endpoint): AddressPolicy {
    let policy = this.policies.get(ep.key)
    if (!policy) this.policies.set(ep.key, (policy = new AddressPolicy(new URL(ep.config.url).hostname, ep.config.allowedNetworks)))
    return policy
  }
}

/** How metrics and logs name an endpoint: its URL as configured (origin and path; URLs never hold credentials). */
function endpointLabels(ep: Endpoint): { upstream: string; endpoint: string } {
  return { upstream: ep.up.name, endpoint: ep.label }
}

/** Where a redirect goes: an http(s) URL, resolved against the one that answered. */
function redirectTarget(up: UpstreamConfig, from: URL, location: string | undefined): URL {
  if (!location) throw new RegmirrorError('REDIRECT_INVALID', `redirect without Location from ${up.name}`)
  let target: URL
  try {
    target = new URL(location, from)
  } catch {
    throw new RegmirrorError('REDIRECT_INVALID', `invalid redirect Location from ${up.name}`)
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new RegmirrorError('REDIRECT_INVALID', `redirect to a non-http(s) URL from ${up.name}`, { detail: { scheme: target.protocol } })
  }
  return target
}

function backoff(base: number, attempt: number): number {
  const exp = base * 2 ** (attempt - 1)
  return exp / 2 + Math.random() * (exp / 2)
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
