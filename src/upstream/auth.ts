import { isIP } from 'node:net'

export interface Challenge {
  scheme: string // lower-cased: 'bearer' | 'basic' | ...
  params: Record<string, string>
}

/**
 * Parses a WWW-Authenticate header (RFC 9110 §11.6.1): `Bearer realm="…",service="…",scope="…"`.
 * Quoted values may contain commas (scopes like `repository:a:pull,push`), so this is a small
 * tokenizer rather than a split.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return []
  const input = Array.isArray(header) ? header.join(', ') : header
  const out: Challenge[] = []
  let i = 0
  const n = input.length
  const skipWs = () => {
    while (i < n && (input[i] === ' ' || input[i] === '\t' || input[i] === ',')) i++
  }
  const readToken = () => {
    const start = i
    while (i < n && /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(input[i] as string)) i++
    return input.slice(start, i)
  }
  let current: Challenge | undefined
  while (i < n) {
    skipWs()
    if (i >= n) break
    const save = i
    const token = readToken()
    if (token === '') {
      i++
      continue
    }
    let j = i
    while (j < n && (input[j] === ' ' || input[j] === '\t')) j++
    if (input[j] === '=' && current) {
      // auth-param
      i = j + 1
      while (i < n && (input[i] === ' ' || input[i] === '\t')) i++
      let value = ''
      if (input[i] === '"') {
        i++
        while (i < n && input[i] !== '"') {
          if (input[i] === '\\' && i + 1 < n) i++
          value += input[i]
          i++
        }
        i++ // closing quote
      } else {
        const start = i
        while (i < n && input[i] !== ',') i++
        value = input.slice(start, i).trim()
      }
      current.params[token.toLowerCase()] = value
    } else {
      i = save + token.length
      current = { scheme: token.toLowerCase(), params: {} }
      out.push(current)
    }
  }
  return out
}

/**
 * The registrable domain, approximated as the last two labels, or three when the second-level
 * label is a generic one under a country code (`example.co.uk`). Good enough to tell
 * `auth.docker.io` belongs with `registry-1.docker.io` and `evil.example` does not; anything
 * else an operator lists explicitly in `realms`.
 */
export function registrableDomain(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '')
  if (isIP(h) || !h.includes('.')) return h
  const labels = h.split('.')
  const n = labels.length
  if (
    n >= 3 &&
    (labels[n - 1] as string).length === 2 &&
    ['co', 'com', 'net', 'org', 'gov', 'ac', 'edu'].includes(labels[n - 2] as string)
  ) {
    return labels.slice(-3).join('.')
  }
  return labels.slice(-2).join('.')
}

/**
 * Whether this upstream may use a token realm. The realm must be listed in `realms`, or be on
 * the upstream's own host, or on another host of its registrable domain (`auth.docker.io` for
 * `registry-1.docker.io`). On the upstream's own host the rule is "same server": when the token
 * request carries the upstream's credentials, scheme and port must match too, so they never
 * reach another service on another port of the same machine.
 */
export function realmAllowed(upstreamUrl: string, realm: string, extra: readonly string[], withCredentials = true): boolean {
  let realmUrl: URL
  try {
    realmUrl = new URL(realm)
  } catch {
    return false
  }
  if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') return false
  const up = new URL(upstreamUrl)
  // A plain-http upstream may use a plain-http realm (labs, tests); an https upstream may not
  // be downgraded to send credentials in the clear.
  if (up.protocol === 'https:' && realmUrl.protocol !== 'https:') return false
  const host = realmUrl.hostname.toLowerCase()
  if (extra.some((h) => h.toLowerCase() === host || h.toLowerCase() === realmUrl.host.toLowerCase())) return true
  if (host === up.hostname.toLowerCase()) return !withCredentials || realmUrl.origin === up.origin
  // An address or a single-label name has no domain to share with anything but itself.
  if (isIP(host.replace(/^\[|\]$/g, '')) !== 0 || !host.includes('.')) return false
  return registrableDomain(host) === registrableDomain(up.hostname)
}

export interface CachedToken {
  token: string
  expiresAt: number
}

/** Where tokens are shared between replicas (the metadata store over Redis). Failures must not throw. */
export interface SharedTokenStore {
  getToken(key: string): Promise<CachedToken | undefined>
  setToken(key: string, value: CachedToken): Promise<void>
  deleteToken(key: string): Promise<void>
}

/**
 * Tokens keyed by realm + service + scope, kept until shortly before they expire. A Map in
 * the process answers the hot path; with a shared store behind it, a token one replica fetched
 * is found by the others on their first miss instead of costing another token request.
 */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>()

  constructor(private readonly shared?: SharedTokenStore) {}

  static key(realm: string, service: string, scope: string): string {
    return `${realm}\u0000${service}\u0000${scope}`
  }

  /** The in-process copy only: synchronous, no I/O. */
  peek(key: string, now = Date.now()): string | undefined {
    const t = this.tokens.get(key)
    if (!t) return undefined
    if (t.expiresAt <= now) {
      this.tokens.delete(key)
      return undefined
    }
    return t.token
  }

  async get(key: string, now = Date.now()): Promise<string | undefined> {
    const local = this.peek(key, now)
    if (local !== undefined || !this.shared) return local
    const t = await this.shared.getToken(key)
    if (!t || typeof t.token !== 'string' || !(t.expiresAt > now)) return undefined
    this.remember(key, t, now)
    return t.token
  }

  async set(key: string, token: string, expiresInSeconds: number, now = Date.now()): Promise<void> {
    // Renew a little early so a token never expires between our check and the upstream's.
    const lifetime = Math.max(1, expiresInSeconds - Math.min(30, expiresInSeconds / 10)) * 1000
    const entry = { token, expiresAt: now + lifetime }
    this.remember(key, entry, now)
    await this.shared?.setToken(key, entry)
  }

  /** Forgets a token the upstream refused, here and for every replica, unless it was already replaced. */
  async reject(key: string, token: string): Promise<void> {
    if (this.tokens.get(key)?.token === token) this.tokens.delete(key)
    if (!this.shared) return
    const t = await this.shared.getToken(key)
    if (t?.token === token) await this.shared.deleteToken(key)
  }

  private remember(key: string, entry: CachedToken, now: number): void {
    this.tokens.set(key, entry)
    if (this.tokens.size > 10_000) {
      for (const [k, v] of this.tokens) if (v.expiresAt <= now) this.tokens.delete(k)
    }
  }
}
