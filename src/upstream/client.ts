import type { Config, UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { AddressPolicy } from './address-policy.js'
import { header, readBounded, toUpstreamError, type Headers, type UpstreamResponse } from './answers.js'
import { UpstreamHealth } from './health.js'
import { Gate, Pace } from './limits.js'
import { describeProxy, Dispatchers, proxyEnvironment, proxyFailure } from './proxy.js'
import { QuotaBook, credentialsOf, parseRateLimit, type Credential } from './quota.js'
import { UpstreamIncidents } from './incidents.js'
import { TokenAuth } from './token-auth.js'
import { TokenCache, type SharedTokenStore } from './token-store.js'

export { contentLength, header, upstreamFailure, type Headers, type UpstreamResponse } from './answers.js'

export interface UpstreamRequest {
  method: 'GET' | 'HEAD'
  /** Path under the upstream's base URL, e.g. `/v2/library/alpine/manifests/3.20`. */
  path: string
  /** Repository, for the token scope. */
  repo?: string
  headers?: Record<string, string>
  /** Retry on connection errors and 502/503/504 (only while nothing was sent to a client). */
  retry?: boolean
}

const MAX_REDIRECTS = 5
const REDIRECTS = new Set([301, 302, 303, 307, 308])

/**
 * Every request to an upstream registry goes through here: auth (token-auth.ts) with the
 * credential that has the most pull quota left (quota.ts), redirects (credentials never follow to
 * another origin; other origins only where the address policy allows), outbound proxies (proxy.ts),
 * the upstream's limits (limits.ts), timeouts, retries with backoff, offline marking (health.ts),
 * and the upstream metrics.
 */
export class UpstreamClient {
  private readonly dispatchers: Dispatchers
  /** Per upstream: what its redirect targets and token realms may reach. */
  private readonly policies = new Map<string, AddressPolicy>()
  private readonly health = new Map<string, UpstreamHealth>()
  private readonly auth: TokenAuth
  private readonly quota = new QuotaBook()
  private readonly credentials = new Map<string, Credential[]>()
  private readonly gates = new Map<string, Gate>()
  private readonly paces = new Map<string, Pace>()
  /** Each upstream's last failure, for the status page. */
  readonly incidents = new UpstreamIncidents()

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    opts: { sharedTokens?: SharedTokenStore; env?: Record<string, string | undefined> } = {},
  ) {
    this.auth = new TokenAuth(
      new TokenCache(opts.sharedTokens),
      (up, url, h) => this.send(up, url, 'GET', h),
      log,
      config.timeouts.bodyIdle,
    )
    const env = proxyEnvironment(opts.env ?? process.env)
    this.dispatchers = new Dispatchers(env, {
      connectTimeout: config.timeouts.connect,
      headersTimeout: config.timeouts.headers,
      bodyTimeout: config.timeouts.bodyIdle,
    })
    for (const up of config.upstreams) this.metrics.upstreamOnline.set({ upstream: up.name }, 1)
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

  healthOf(up: UpstreamConfig): UpstreamHealth {
    let h = this.health.get(up.name)
    if (!h) {
      h = new UpstreamHealth(this.config.offline.failureThreshold, this.config.offline.coolDown, (online) => {
        this.metrics.upstreamOnline.set({ upstream: up.name }, online ? 1 : 0)
        if (online) this.log.info({ upstream: up.name }, 'upstream is back online')
        else this.log.warn({ upstream: up.name, coolDownMs: this.config.offline.coolDown }, 'upstream marked offline')
      })
      this.health.set(up.name, h)
    }
    return h
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

  async request(up: UpstreamConfig, req: UpstreamRequest): Promise<UpstreamResponse> {
    // The last guard of offline mode: nothing, not even a token request, leaves for this upstream.
    if (up.offline)
      throw new RegmirrorError('UPSTREAM_NOT_CONTACTED', `upstream ${up.name} is offline by configuration`, {
        detail: { upstream: up.name },
      })
    const health = this.healthOf(up)
    const admission = health.admit()
    if (!admission.ok) {
      // Retry-After tells clients (and CI retry loops) when asking again can make a difference.
      throw new RegmirrorError('UPSTREAM_OFFLINE', `upstream ${up.name} is offline`, {
        detail: { upstream: up.name },
        retryAfter: String(health.retryAfterSeconds()),
      })
    }
    try {
      const gate = this.gateOf(up)
      const release = await gate.acquire()
      let res: UpstreamResponse
      try {
        res = await this.requestWithRetries(up, req, health, gate)
      } catch (err) {
        release()
        throw err
      }
      if (res.status >= 500 || res.status === 429) this.incidents.noteStatus(up.name, res.status)
      // The turn is held until the body is done with: a blob download is a request in flight until its last byte.
      if (res.body.destroyed || res.body.readableEnded) release()
      else for (const ev of ['close', 'end', 'error']) res.body.once(ev, release)
      return res
    } catch (err) {
      this.incidents.note(up.name, err)
      throw err
    } finally {
      // Whatever happened, a probe has had its outcome: an upstream never stays offline because
      // the one request allowed through ended in a way the loop does not count.
      health.settleProbe(admission)
    }
  }

  /**
   * Whether the upstream's pull quota is below its `quotaReserve` for every credential it has: then tags are
   * not revalidated (tag-service.ts), so what is left goes to content nobody has.
   */
  quotaLow(up: UpstreamConfig): boolean {
    return this.quota.low(this.credentialsOf(up), up.quotaReserve)
  }

  /** A blob body of this upstream, read no faster than its `maxMbps` share (all its bodies together). */
  paced<T extends Uint8Array>(up: UpstreamConfig, body: AsyncIterable<T>): AsyncIterable<T> {
    if (up.maxMbps <= 0) return body
    let pace = this.paces.get(up.name)
    if (!pace) {
      pace = new Pace((up.maxMbps * 1e6) / 8, (n) => this.metrics.upstreamThrottledBytes.inc({ upstream: up.name }, n))
      this.paces.set(up.name, pace)
    }
    return pace.paced(body)
  }

  private credentialsOf(up: UpstreamConfig): Credential[] {
    let list = this.credentials.get(up.name)
    if (!list) {
      list = credentialsOf(new URL(up.url).origin, up.credentials)
      this.credentials.set(up.name, list)
    }
    return list
  }

  private gateOf(up: UpstreamConfig): Gate {
    let gate = this.gates.get(up.name)
    if (!gate) {
      const labels = { upstream: up.name }
      gate = new Gate(up.name, up.maxConcurrent, up.maxRequestsPerSecond, up.maxQueueWait, {
        waited: (ms, admitted) => {
          this.metrics.upstreamQueueWait.observe({ ...labels, outcome: admitted ? 'admitted' : 'timeout' }, ms / 1000)
          if (!admitted) this.log.warn({ upstream: up.name, waitedMs: ms }, 'no turn to ask the upstream within maxQueueWait')
        },
        queueLength: (n) => this.metrics.upstreamQueueLength.set(labels, n),
      })
      this.gates.set(up.name, gate)
    }
    return gate
  }

  private async requestWithRetries(
    up: UpstreamConfig,
    req: UpstreamRequest,
    health: UpstreamHealth,
    gate: Gate,
  ): Promise<UpstreamResponse> {
    const attempts = req.retry === false ? 1 : Math.max(1, this.config.retries.attempts)
    let lastErr: unknown
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        await sleep(backoff(this.config.retries.backoff, attempt))
        await gate.spend()
      }
      try {
        const res = await this.requestOnce(up, req)
        if (res.status < 500 && res.status !== 429) {
          health.success()
          return res
        }
        health.failure()
        if (attempt + 1 >= attempts || ![502, 503, 504].includes(res.status)) return res
        await res.body.dump().catch(() => {})
        lastErr = new RegmirrorError('UPSTREAM_ERROR', `upstream ${up.name} answered ${res.status}`)
      } catch (err) {
        lastErr = err
        // The upstream answered, wrongly or with a refusal: it is reachable, and asking again
        // would get the same answer.
        if (err instanceof RegmirrorError && err.class !== 'upstream') {
          health.success()
          throw err
        }
        health.failure()
        if (health.offline) break
      }
    }
    throw lastErr
  }

  private async requestOnce(up: UpstreamConfig, req: UpstreamRequest): Promise<UpstreamResponse> {
    const base = new URL(up.url)
    const scope = req.repo ? `repository:${req.repo}:pull` : undefined
    const creds = this.credentialsOf(up)
    let cred = this.quota.pick(creds)
    let auth = await this.auth.upFront(up, cred, scope)
    let url = new URL(base.pathname.replace(/\/$/, '') + req.path, base)
    let triedAuth = false
    let switched = false
    const seen = new Set<string>()
    for (;;) {
      const sameOrigin = url.origin === base.origin
      const headers: Record<string, string> = { 'user-agent': 'regmirror', ...req.headers }
      if (auth && sameOrigin) headers.authorization = auth
      const res = await this.send(up, url, req.method, headers)
      if (sameOrigin) this.noteRateLimit(up, cred, res.headers)
      // This account's quota is spent (the 429 said how much is left): another one with quota asks once more.
      const other = res.status === 429 && sameOrigin && !switched ? this.quota.pick(creds) : cred
      if (other !== cred) {
        switched = true
        await res.body.dump().catch(() => {})
        this.log.info({ upstream: up.name, from: cred.label, to: other.label }, 'pull quota of a credential spent; asking with another')
        cred = other
        auth = await this.auth.upFront(up, cred, scope)
        triedAuth = false
        continue
      }
      if (res.status === 401 && sameOrigin && !triedAuth) {
        triedAuth = true
        const challenge = header(res.headers, 'www-authenticate')
        await res.body.dump().catch(() => {})
        const refused = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined
        auth = await this.auth.authorize(up, cred, challenge, scope, refused)
        if (auth === undefined) {
          throw new RegmirrorError('UNAUTHORIZED', `upstream ${up.name} requires authentication`, { detail: { upstream: up.name } })
        }
        continue
      }
      if (!REDIRECTS.has(res.status)) return { ...res, where: url.origin + url.pathname }
      const location = header(res.headers, 'location')
      await res.body.dump().catch(() => {})
      const target = redirectTarget(up, url, location)
      if (seen.has(target.href) || seen.size >= MAX_REDIRECTS) {
        throw new RegmirrorError('REDIRECT_INVALID', `too many redirects or a redirect loop from ${up.name}`)
      }
      seen.add(url.href)
      url = target
    }
  }

  private async send(up: UpstreamConfig, url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>) {
    const started = process.hrtime.bigint()
    const route = this.dispatchers.route(up.proxy, url, url.origin === new URL(up.url).origin ? undefined : this.policyOf(up))
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
      this.metrics.upstreamRequests.inc({ upstream: up.name, status: String(res.statusCode) })
      this.metrics.upstreamDuration.observe({ upstream: up.name }, Number(process.hrtime.bigint() - started) / 1e9)
      const body = res.body
      // Paused first: a 'data' listener on a stream not explicitly paused switches it to flowing
      // mode, and whatever arrives before the caller starts reading (say, while a fill awaits
      // eviction) would be lost. read(), async iteration, pipe and dump still emit 'data'.
      body.pause()
      body.on('data', (chunk: Buffer) => this.metrics.upstreamBytes.inc({ upstream: up.name }, chunk.length))
      // A body given up before anyone read it (destroyed on a refusal, or left behind) emits
      // 'error'; readers still see it through their own listeners, but it must never be uncaught.
      body.on('error', () => {})
      return { status: res.statusCode, headers: res.headers as Headers, body }
    } catch (err) {
      this.metrics.upstreamRequests.inc({ upstream: up.name, status: '0' })
      throw (route.proxy && proxyFailure(up.name, route.proxy, url, err)) || toUpstreamError(up, err)
    }
  }

  /** Docker Hub's `ratelimit-remaining: 76;w=21600`: what this credential has left for the window. */
  private noteRateLimit(up: UpstreamConfig, cred: Credential, headers: Headers): void {
    const rl = parseRateLimit(header(headers, 'ratelimit-remaining'))
    if (rl === undefined) return
    this.quota.note(cred, rl.remaining, rl.windowMs)
    this.metrics.quotaRemaining.set({ upstream: up.name, credential: cred.label }, rl.remaining)
    this.metrics.rateLimitRemaining.set({ upstream: up.name }, this.quota.best(this.credentialsOf(up)) ?? rl.remaining)
    this.log.debug(
      { upstream: up.name, credential: cred.label, ratelimitRemaining: rl.remaining, ratelimitLimit: header(headers, 'ratelimit-limit') },
      'upstream rate limit',
    )
  }

  /** The address policy of an upstream's redirect targets and token realms. */
  private policyOf(up: UpstreamConfig): AddressPolicy {
    let policy = this.policies.get(up.name)
    if (!policy) this.policies.set(up.name, (policy = new AddressPolicy(new URL(up.url).hostname, up.allowedNetworks)))
    return policy
  }
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
