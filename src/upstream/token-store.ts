import { createHash } from 'node:crypto'
import type { Kv } from '../kv.js'

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
 * Tokens keyed by upstream + credential + realm + service + scope (token-auth.ts), kept until
 * shortly before they expire. A Map in
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

/**
 * Tokens in a shared kv (Redis), for the other replicas: under a hash of upstream + credential +
 * realm + service + scope, with a TTL equal to their remaining lifetime. Never on disk: they are
 * secrets, and short-lived.
 */
export class KvTokens implements SharedTokenStore {
  constructor(private readonly kv: Kv) {}

  private key(key: string): string {
    return `token:${createHash('sha256').update(key).digest('hex')}`
  }

  async getToken(key: string): Promise<CachedToken | undefined> {
    const t = await this.kv.get<CachedToken>(this.key(key))
    return t && typeof t.token === 'string' && typeof t.expiresAt === 'number' ? t : undefined
  }

  async setToken(key: string, value: CachedToken): Promise<void> {
    const ttl = value.expiresAt - Date.now()
    if (ttl > 0) await this.kv.set(this.key(key), value, ttl)
  }

  async deleteToken(key: string): Promise<void> {
    await this.kv.delete(this.key(key))
  }
}
