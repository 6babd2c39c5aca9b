import { RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import { SingleFlight } from '../single-flight.js'
import { readBounded, type UpstreamResponse } from './answers.js'
import { parseChallenges, realmAllowed } from './auth.js'
import type { Endpoint } from './pool.js'
import type { Credential } from './quota.js'
import { TokenCache } from './token-store.js'

/** A token response is a few kilobytes of JSON; anything near this is not one. */
const MAX_TOKEN_RESPONSE = 64 * 1024
/** Tokens are renewed at least this often whatever lifetime the realm claims. */
const MAX_TOKEN_LIFETIME_S = 24 * 3600
// What may go into an Authorization header: visible ASCII, no spaces, quotes or line breaks.
const TOKEN_RE = /^[\x21-\x7e]{1,16384}$/

/** How the token auth sends its one kind of request (the client's `send`, with its dispatchers and metrics). */
export type TokenSend = (ep: Endpoint, url: URL, headers: Record<string, string>) => Promise<Omit<UpstreamResponse, 'where'>>

/**
 * The registry auth flow of the distribution spec: a 401 with a Bearer challenge is answered by
 * a token from the realm (with the credential as HTTP Basic, when there is one), a Basic challenge
 * by the credential itself. Each endpoint of an upstream is on its own: its credentials (one of
 * several accounts, or none), its realm rules (realmAllowed against its URL and `realms`). Tokens
 * are cached per endpoint, credential, realm, service and scope, shared between replicas through
 * the token store, and one token request serves every concurrent request for a scope.
 */
export class TokenAuth {
  /** The last Bearer challenge per endpoint, so later requests can send a token up front. */
  private readonly lastChallenge = new Map<string, { realm: string; service: string }>()
  private readonly flights = new SingleFlight<string>()

  constructor(
    private readonly tokens: TokenCache,
    private readonly send: TokenSend,
    private readonly log: Logger,
    private readonly bodyDeadlineMs: number,
  ) {}

  /** An Authorization header to send before any challenge, if a token for this scope is cached. */
  async upFront(ep: Endpoint, cred: Credential, scope: string | undefined): Promise<string | undefined> {
    const ch = this.lastChallenge.get(ep.key)
    if (!ch || !scope) return undefined
    const t = await this.tokens.get(tokenKey(ep, cred, ch.realm, ch.service, scope))
    return t ? `Bearer ${t}` : undefined
  }

  basic(cred: Credential): string | undefined {
    const c = cred.credentials
    const password = c?.password ?? c?.token
    if (password === undefined) return undefined
    return `Basic ${Buffer.from(`${c?.username ?? 'token'}:${password}`).toString('base64')}`
  }

  /**
   * Answers a 401 challenge; returns the Authorization header to retry with. `refused` is the
   * bearer token the 401 answered: a cached token the upstream revoked or expired early must be
   * replaced, not sent again.
   */
  async authorize(
    ep: Endpoint,
    cred: Credential,
    challengeHeader: string | undefined,
    scope: string | undefined,
    refused: string | undefined,
  ): Promise<string | undefined> {
    const up = ep.up
    const challenges = parseChallenges(challengeHeader)
    const bearer = challenges.find((c) => c.scheme === 'bearer')
    const realm = bearer?.params.realm
    if (bearer && realm) {
      const service = bearer.params.service ?? ''
      const tokenScope = bearer.params.scope ?? scope ?? ''
      if (!realmAllowed(ep.config.url, realm, ep.config.realms, this.basic(cred) !== undefined)) {
        this.log.warn(
          { upstream: up.name, endpoint: ep.label, realmHost: safeHost(realm) },
          'token realm not allowed for this upstream; refusing to authenticate',
        )
        throw new RegmirrorError('REALM_DENIED', `token realm of ${up.name} is not allowed`, { detail: { upstream: up.name } })
      }
      this.lastChallenge.set(ep.key, { realm, service })
      const key = tokenKey(ep, cred, realm, service, tokenScope)
      const cached = await this.tokens.get(key)
      if (cached !== undefined && cached !== refused) return `Bearer ${cached}`
      if (cached !== undefined) await this.tokens.reject(key, cached)
      const token = await this.flights.do(key, () => this.fetchToken(ep, cred, realm, service, tokenScope, key)).promise
      return `Bearer ${token}`
    }
    if (challenges.some((c) => c.scheme === 'basic')) return this.basic(cred)
    return undefined
  }

  private async fetchToken(
    ep: Endpoint,
    cred: Credential,
    realm: string,
    service: string,
    tokenScope: string,
    key: string,
  ): Promise<string> {
    const up = ep.up
    const tokenUrl = new URL(realm)
    if (service) tokenUrl.searchParams.set('service', service)
    if (tokenScope) for (const s of tokenScope.split(' ')) tokenUrl.searchParams.append('scope', s)
    const headers: Record<string, string> = { 'user-agent': 'regmirror' }
    const basic = this.basic(cred)
    if (basic) headers.authorization = basic
    const res = await this.send(ep, tokenUrl, headers)
    if (res.status !== 200) {
      await res.body.dump().catch(() => {})
      if (res.status === 401 || res.status === 403) {
        throw new RegmirrorError('UNAUTHORIZED', `token request for ${up.name} was refused (${res.status})`, {
          detail: { upstream: up.name },
        })
      }
      throw new RegmirrorError('UPSTREAM_ERROR', `token request for ${up.name} failed (${res.status})`)
    }
    const tooLarge = () => new RegmirrorError('UPSTREAM_ERROR', `token response of ${up.name} is too large`)
    const body = await readBounded(up, res, MAX_TOKEN_RESPONSE, tooLarge, this.bodyDeadlineMs)
    const { token, expiresIn } = parseTokenResponse(up, body)
    await this.tokens.set(key, token, expiresIn)
    return token
  }
}

function parseTokenResponse(up: Endpoint['up'], body: Buffer): { token: string; expiresIn: number } {
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
  return { token, expiresIn: Math.min(claimed, MAX_TOKEN_LIFETIME_S) }
}

/**
 * Tokens are kept per endpoint and credential: a token got with one endpoint's credentials must
 * never be sent to another endpoint, or another upstream, that names the same realm, service and
 * scope, and a token of one account must not spend another account's pull quota.
 */
function tokenKey(ep: Endpoint, cred: Credential, realm: string, service: string, scope: string): string {
  return `${ep.key}\u0000${cred.key}\u0000${TokenCache.key(realm, service, scope)}`
}

function safeHost(u: string): string {
  try {
    return new URL(u).host
  } catch {
    return '(invalid)'
  }
}
