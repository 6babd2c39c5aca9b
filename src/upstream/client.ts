import { isIP } from 'node:net'
import { Agent, buildConnector, errors as undiciErrors, type Dispatcher } from 'undici'
import type { Config, UpstreamConfig } from '../config/schema.js'
import { REFUSALS, RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { AddressPolicy } from './address-policy.js'
import { TokenCache, parseChallenges, realmAllowed, type SharedTokenStore } from './auth.js'
import { UpstreamHealth } from './health.js'
import { SingleFlight } from '../single-flight.js'

export type Headers = Record<string, string | string[] | undefined>

export interface UpstreamResponse {
  status: number
  headers: Headers
  body: Dispatcher.ResponseData['body']
  /** The URL that finally answered (after redirects), without its query: for logs only. */
  where: string
}

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
/** A token response is a few kilobytes of JSON; anything near this is not one. */
const MAX_TOKEN_RESPONSE = 64 * 1024
/** Tokens are renewed at least this often whatever lifetime the realm claims. */
const MAX_TOKEN_LIFETIME_S = 24 * 3600
// What may go into an Authorization header: visible ASCII, no spaces, quotes or line breaks.
const TOKEN_RE = /^[\x21-\x7e]{1,16384}$/

/**
 * Reads a whole upstream body, refusing it (with `tooLarge()`) as soon as it passes `limit`
 * bytes, and (with `deadlineMs`) giving up once the whole body took longer than that: a
 * hostile or broken upstream can neither make the mirror buffer without bound nor hold a
 * request by dripping a small body forever.
 */
async function readBounded(
  up: UpstreamConfig,
  res: Pick<UpstreamResponse, 'body'>,
  limit: number,
  tooLarge: () => Error,
  deadlineMs: number,
): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  let timedOut = false
  const timer = deadlineMs > 0 ? setTimeout(() => ((timedOut = true), res.body.destroy()), deadlineMs) : undefined
  try {
    for await (const chunk of res.body) {
      n += (chunk as Buffer).length
      if (n > limit) {
        res.body.destroy()
        throw tooLarge()
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    if (timedOut)
      throw new RegmirrorError('UPSTREAM_TIMEOUT', `the body from ${up.name} did not arrive within ${deadlineMs} ms`, { cause: err })
    // A connection cut mid-body is the upstream failing, like one refused before it.
    throw toUpstreamError(up, err)
  } finally {
    clearTimeout(timer)
  }
  return Buffer.concat(chunks)
}

export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * Every request to an upstream registry goes through here: bearer/basic auth with a token
 * cache, redirects (credentials never follow to another host), timeouts, retries with backoff,
 * offline marking, and the upstream metrics.
 */
export class UpstreamClient {
  private readonly agent: Agent
  /** Per upstream: the agent for every origin but the upstream's own (redirect targets, token realms). */
  private readonly foreign = new Map<string, Agent>()
  private readonly tokens: TokenCache
  /** The last Bearer challenge per upstream, so later requests can send a token up front. */
  private readonly lastChallenge = new Map<string, { realm: string; service: string }>()
  private readonly health = new Map<string, UpstreamHealth>()
  private readonly tokenFlights = new SingleFlight<string>()

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    opts: { sharedTokens?: SharedTokenStore } = {},
  ) {
    this.tokens = new TokenCache(opts.sharedTokens)
    this.agent = new Agent({ ...this.agentOptions(), connect: { timeout: config.timeouts.connect } })
    for (const up of config.upstreams) {
      this.metrics.upstreamOnline.set({ upstream: up.name }, 1)
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
    await Promise.all([this.agent.close(), ...[...this.foreign.values()].map((a) => a.close())])
  }

  /**
   * Reads a small upstream body (manifest, tag list, token) whole, within `limit` bytes and,
   * from its first byte to its last, within the body idle timeout.
   */
  readSmall(up: UpstreamConfig, res: Pick<UpstreamResponse, 'body'>, limit: number, tooLarge: () => Error): Promise<Buffer> {
    return readBounded(up, res, limit, tooLarge, this.config.timeouts.bodyIdle)
  }

  /**
   * The dispatcher for a URL: the upstream's own origin is dialled as configured; any other
   * origin (a blob CDN, a token realm) only where the upstream's address policy allows, checked
   * on the address each connection really goes to.
   */
  private dispatcherFor(up: UpstreamConfig, url: URL): Agent {
    if (url.origin === new URL(up.url).origin) return this.agent
    let agent = this.foreign.get(up.name)
    if (!agent) {
      const policy = new AddressPolicy(new URL(up.url).hostname, up.allowedNetworks)
      const dial = buildConnector({ timeout: this.config.timeouts.connect, lookup: policy.lookup })
      // An IP literal never goes through `lookup`: check it here.
      const connect: buildConnector.connector = (opts, cb) => {
        const host = opts.hostname.replace(/^\[|\]$/g, '')
        if (isIP(host) === 0) return dial(opts, cb)
        policy.check(host, host).then(
          () => dial(opts, cb),
          (err: Error) => cb(err, null),
        )
      }
      agent = new Agent({ ...this.agentOptions(), connect })
      this.foreign.set(up.name, agent)
    }
    return agent
  }

  private agentOptions() {
    return {
      headersTimeout: this.config.timeouts.headers,
      bodyTimeout: this.config.timeouts.bodyIdle,
      keepAliveTimeout: 30_000,
      connections: 64,
    }
  }

  async request(up: UpstreamConfig, req: UpstreamRequest): Promise<UpstreamResponse> {
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
      return await this.requestWithRetries(up, req, health)
    } finally {
      // Whatever happened, a probe has had its outcome: an upstream never stays offline because
      // the one request allowed through ended in a way the loop does not count.
      health.settleProbe(admission)
    }
  }

  private async requestWithRetries(up: UpstreamConfig, req: UpstreamRequest, health: UpstreamHealth): Promise<UpstreamResponse> {
    const attempts = req.retry === false ? 1 : Math.max(1, this.config.retries.attempts)
    let lastErr: unknown
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(backoff(this.config.retries.backoff, attempt))
      try {
        const res = await this.requestOnce(up, req)
        if (res.status >= 500 || res.status === 429) {
          health.failure()
          if (attempt + 1 < attempts && (res.status === 502 || res.status === 503 || res.status === 504)) {
            await res.body.dump().catch(() => {})
            lastErr = new RegmirrorError('UPSTREAM_ERROR', `upstream ${up.name} answered ${res.status}`)
            continue
          }
        } else {
          health.success()
        }
        return res
      } catch (err) {
        lastErr = err
        // The upstream answered, wrongly or with a refusal: it is reachable, and asking again
        // would get the same answer.
        if (err instanceof RegmirrorError && (err.code === 'UNAUTHORIZED' || REFUSALS.has(err.code))) {
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
    let auth = await this.authHeaderFor(up, scope)
    let url = new URL(base.pathname.replace(/\/$/, '') + req.path, base)
    let triedAuth = false
    const seen = new Set<string>()
    for (let hop = 0; ;) {
      const sameOrigin = url.origin === base.origin
      const headers: Record<string, string> = { 'user-agent': 'regmirror', ...req.headers }
      if (auth && sameOrigin) headers.authorization = auth
      const res = await this.send(up, url, req.method, headers)
      if (res.status === 401 && sameOrigin && !triedAuth) {
        triedAuth = true
        const challenge = header(res.headers, 'www-authenticate')
        await res.body.dump().catch(() => {})
        const refused = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : undefined
        const next = await this.authorize(up, challenge, scope, refused)
        if (next === undefined) {
          throw new RegmirrorError('UNAUTHORIZED', `upstream ${up.name} requires authentication`, { detail: { upstream: up.name } })
        }
        auth = next
        continue
      }
      if ([301, 302, 303, 307, 308].includes(res.status)) {
        const location = header(res.headers, 'location')
        await res.body.dump().catch(() => {})
        if (!location) throw new RegmirrorError('REDIRECT_INVALID', `redirect without Location from ${up.name}`)
        let target: URL
        try {
          target = new URL(location, url)
        } catch {
          throw new RegmirrorError('REDIRECT_INVALID', `invalid redirect Location from ${up.name}`)
        }
        if (target.protocol !== 'http:' && target.protocol !== 'https:') {
          throw new RegmirrorError('REDIRECT_INVALID', `redirect to a non-http(s) URL from ${up.name}`, {
            detail: { scheme: target.protocol },
          })
        }
        if (seen.has(target.href) || ++hop > MAX_REDIRECTS) {
          throw new RegmirrorError('REDIRECT_INVALID', `too many redirects or a redirect loop from ${up.name}`)
        }
        seen.add(url.href)
        url = target
        continue
      }
      return { ...res, where: url.origin + url.pathname }
    }
  }

  private async send(up: UpstreamConfig, url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>) {
    const started = process.hrtime.bigint()
    try {
      const res = await this.dispatcherFor(up, url).request({ origin: url.origin, path: url.pathname + url.search, method, headers })
      this.metrics.upstreamRequests.inc({ upstream: up.name, status: String(res.statusCode) })
      this.metrics.upstreamDuration.observe({ upstream: up.name }, Number(process.hrtime.bigint() - started) / 1e9)
      const remaining = header(res.headers, 'ratelimit-remaining')
      if (remaining !== undefined) {
        const n = Number.parseInt(remaining, 10)
        if (Number.isFinite(n)) {
          this.metrics.rateLimitRemaining.set({ upstream: up.name }, n)
          this.log.info(
            { upstream: up.name, ratelimitRemaining: n, ratelimitLimit: header(res.headers, 'ratelimit-limit') },
            'upstream rate limit',
          )
        }
      }
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
      throw toUpstreamError(up, err)
    }
  }

  private async authHeaderFor(up: UpstreamConfig, scope: string | undefined): Promise<string | undefined> {
    const ch = this.lastChallenge.get(up.name)
    if (ch && scope) {
      const t = await this.tokens.get(tokenKey(up, ch.realm, ch.service, scope))
      if (t) return `Bearer ${t}`
    }
    return undefined
  }

  private basic(up: UpstreamConfig): string | undefined {
    const c = up.credentials
    if (!c) return undefined
    const password = c.password ?? c.token
    if (password === undefined) return undefined
    const user = c.username ?? 'token'
    return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
  }

  /**
   * Answers a 401 challenge; returns the Authorization header to retry with. `refused` is the
   * bearer token the 401 answered: a cached token the upstream revoked or expired early must be
   * replaced, not sent again.
   */
  private async authorize(
    up: UpstreamConfig,
    challengeHeader: string | undefined,
    scope: string | undefined,
    refused: string | undefined,
  ): Promise<string | undefined> {
    const challenges = parseChallenges(challengeHeader)
    const bearer = challenges.find((c) => c.scheme === 'bearer')
    if (bearer && bearer.params.realm) {
      const realm = bearer.params.realm
      const service = bearer.params.service ?? ''
      const tokenScope = bearer.params.scope ?? scope ?? ''
      if (!realmAllowed(up.url, realm, up.realms, this.basic(up) !== undefined)) {
        this.log.warn(
          { upstream: up.name, realmHost: safeHost(realm) },
          'token realm not allowed for this upstream; refusing to authenticate',
        )
        throw new RegmirrorError('REALM_DENIED', `token realm of ${up.name} is not allowed`, { detail: { upstream: up.name } })
      }
      this.lastChallenge.set(up.name, { realm, service })
      const key = tokenKey(up, realm, service, tokenScope)
      const cached = await this.tokens.get(key)
      if (cached !== undefined && cached !== refused) return `Bearer ${cached}`
      if (cached !== undefined) await this.tokens.reject(key, cached)
      // Concurrent cold requests for one scope share one token request.
      const token = await this.tokenFlights.do(key, () => this.fetchToken(up, realm, service, tokenScope, key)).promise
      return `Bearer ${token}`
    }
    if (challenges.some((c) => c.scheme === 'basic')) return this.basic(up)
    return undefined
  }

  private async fetchToken(up: UpstreamConfig, realm: string, service: string, tokenScope: string, key: string): Promise<string> {
    const tokenUrl = new URL(realm)
    if (service) tokenUrl.searchParams.set('service', service)
    if (tokenScope) for (const s of tokenScope.split(' ')) tokenUrl.searchParams.append('scope', s)
    const headers: Record<string, string> = { 'user-agent': 'regmirror' }
    const basic = this.basic(up)
    if (basic) headers.authorization = basic
    const res = await this.send(up, tokenUrl, 'GET', headers)
    if (res.status !== 200) {
      await res.body.dump().catch(() => {})
      if (res.status === 401 || res.status === 403) {
        throw new RegmirrorError('UNAUTHORIZED', `token request for ${up.name} was refused (${res.status})`, {
          detail: { upstream: up.name },
        })
      }
      throw new RegmirrorError('UPSTREAM_ERROR', `token request for ${up.name} failed (${res.status})`)
    }
    const body = await this.readSmall(
      up,
      res,
      MAX_TOKEN_RESPONSE,
      () => new RegmirrorError('UPSTREAM_ERROR', `token response of ${up.name} is too large`),
    )
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown }
    try {
      doc = JSON.parse(body.toString('utf8')) as typeof doc
    } catch (err) {
      throw new RegmirrorError('UPSTREAM_ERROR', `token response of ${up.name} is not JSON`, { cause: err })
    }
    if (typeof doc !== 'object' || doc === null)
      throw new RegmirrorError('UPSTREAM_ERROR', `token response of ${up.name} is not a JSON object`)
    const token =
      typeof doc.token === 'string' && doc.token !== '' ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : undefined
    if (!token || !TOKEN_RE.test(token)) throw new RegmirrorError('UPSTREAM_ERROR', `token response of ${up.name} has no usable token`)
    // The spec's default lifetime when the server does not say is 60 seconds.
    const claimed = typeof doc.expires_in === 'number' && Number.isFinite(doc.expires_in) && doc.expires_in > 0 ? doc.expires_in : 60
    const expiresIn = Math.min(claimed, MAX_TOKEN_LIFETIME_S)
    await this.tokens.set(key, token, expiresIn)
    return token
  }
}

/**
 * Tokens are kept per upstream: a token got with one upstream's credentials must never be sent
 * to another upstream that names the same realm, service and scope.
 */
function tokenKey(up: UpstreamConfig, realm: string, service: string, scope: string): string {
  return `${up.name}\u0000${TokenCache.key(realm, service, scope)}`
}

function safeHost(u: string): string {
  try {
    return new URL(u).host
  } catch {
    return '(invalid)'
  }
}

export function toUpstreamError(up: UpstreamConfig, err: unknown): RegmirrorError {
  if (err instanceof RegmirrorError) return err
  const timeout =
    err instanceof undiciErrors.ConnectTimeoutError ||
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError
  return new RegmirrorError(timeout ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_ERROR', `upstream ${up.name} ${timeout ? 'timed out' : 'failed'}`, {
    cause: err,
    detail: { upstream: up.name },
  })
}

function backoff(base: number, attempt: number): number {
  const exp = base * 2 ** (attempt - 1)
  return exp / 2 + Math.random() * (exp / 2)
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
