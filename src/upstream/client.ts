import type { Config, UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { header, readBounded, type UpstreamResponse } from './answers.js'
import { Allowances } from './allowance.js'
import type { Gate } from './limits.js'
import { EndpointPool, type Endpoint } from './pool.js'
import { UpstreamIncidents } from './incidents.js'
import { TokenAuth } from './token-auth.js'
import { TokenCache, type SharedTokenStore } from './token-store.js'
import { endpointLabels, Transport } from './transport.js'

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
 * Every request to an upstream registry goes through here: the upstream's limits (limits.ts), the
 * choice of endpoint (pool.ts), auth (token-auth.ts) with the endpoint's credential that has the most
 * pull quota left (quota.ts), redirects (credentials never follow to another origin; other origins
 * only where the endpoint's address policy allows), outbound proxies (proxy.ts), timeouts, retries
 * with backoff, failover to the next endpoint, offline marking (health.ts), and the upstream and
 * endpoint metrics.
 */
export class UpstreamClient {
  private readonly transport: Transport
  private readonly pools = new Map<string, EndpointPool>()
  private readonly auth: TokenAuth
  private readonly allowances: Allowances
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
      (ep, url, h) => this.transport.send(ep, url, 'GET', h),
      log,
      config.timeouts.bodyIdle,
    )
    this.allowances = new Allowances(log, metrics)
    this.transport = new Transport(config, log, metrics, opts.env ?? process.env)
    for (const up of config.upstreams) {
      this.metrics.upstreamOnline.set({ upstream: up.name }, 1)
      for (const ep of this.poolOf(up).endpoints) this.metrics.endpointUp.set(endpointLabels(ep), 1)
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
    await this.transport.close()
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
    const gate = this.allowances.gateOf(up)
    const release = await gate.acquire()
    let res: UpstreamResponse
    try {
      res = await this.requestFromPool(up, req, gate)
    } catch (err) {
      release()
      this.incidents.note(up.name, err)
      throw err
    }
    if (res.status >= 500 || res.status === 429) this.incidents.noteStatus(up.name, res.status)
    // The turn is held until the body is done with: a blob download is a request in flight until its last byte.
    if (res.body.destroyed || res.body.readableEnded) release()
    else for (const ev of ['close', 'end', 'error']) res.body.once(ev, release)
    return res
  }

  /**
   * Whether the upstream's pull quota is below its `quotaReserve` for every credential it has: then tags are
   * not revalidated (tag-service.ts), so what is left goes to content nobody has.
   */
  quotaLow(up: UpstreamConfig): boolean {
    return this.allowances.quotaLow(up, this.poolOf(up).endpoints)
  }

  /** A blob body of this upstream, read no faster than its `maxMbps` share (all its bodies together). */
  paced<T extends Uint8Array>(up: UpstreamConfig, body: AsyncIterable<T>): AsyncIterable<T> {
    return this.allowances.paced(up, body)
  }

  private async requestFromPool(up: UpstreamConfig, req: UpstreamRequest, gate: Gate): Promise<UpstreamResponse> {
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
      if (attempt > 0) {
        await sleep(backoff(this.config.retries.backoff, attempt))
        // A retry is another request against the upstream's rate.
        await gate.spend()
      }
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
    const creds = this.allowances.credentialsOf(ep)
    let cred = this.allowances.pick(creds)
    let auth = await this.auth.upFront(ep, cred, scope)
    const path = req.path.startsWith('/v2/') ? `/v2/${ep.config.prefix}${req.path.slice('/v2/'.length)}` : req.path
    let url = new URL(base.pathname.replace(/\/$/, '') + path, base)
    let triedAuth = false
    let switched = false
    const seen = new Set<string>()
    for (;;) {
      const sameOrigin = url.origin === ep.origin
      const headers: Record<string, string> = { 'user-agent': 'regmirror', ...req.headers }
      if (auth && sameOrigin) headers.authorization = auth
      const res = await this.transport.send(ep, url, req.method, headers)
      if (sameOrigin) this.allowances.noteRateLimit(ep, cred, res.headers, this.poolOf(ep.up).endpoints)
      // This account's quota is spent (the 429 said how much is left): another one with quota asks once more.
      const other = res.status === 429 && sameOrigin && !switched ? this.allowances.pick(creds) : cred
      if (other !== cred) {
        switched = true
        await res.body.dump().catch(() => {})
        this.log.info(
          { upstream: ep.up.name, endpoint: ep.label, from: cred.label, to: other.label },
          'pull quota of a credential spent; asking with another',
        )
        cred = other
        auth = await this.auth.upFront(ep, cred, scope)
        triedAuth = false
        continue
      }
      if (res.status === 401 && sameOrigin && !triedAuth) {
        triedAuth = true
        const challenge = header(res.headers, 'www-authenticate')
        await res.body.dump().catch(() => {})
        const refused = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined
        auth = await this.auth.authorize(ep, cred, challenge, scope, refused)
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
