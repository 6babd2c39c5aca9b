/**
 * Pull quota per credential (Docker Hub: `ratelimit-remaining: 76;w=21600` on manifest answers), and which of
 * several credentials to use: the one with the most quota left, a credential not heard of yet counting as full,
 * ties to the first listed. Anything with a list of credentials (an upstream, an endpoint of a pool) asks here.
 */
import { createHash } from 'node:crypto'
import type { Credentials } from '../config/schema.js'

/** One way of asking a registry: with one of its credentials, or anonymously. */
export interface Credential {
  readonly credentials?: Credentials
  /** Stable and distinct per registry and credential (tokens and quota are kept under it); never shown. */
  readonly key: string
  /** What logs and metrics name it by: the user name, `#2` for a token without one, or `anonymous`. */
  readonly label: string
}

/** Docker Hub's window when a registry does not say (`w=`): six hours. */
const DEFAULT_WINDOW_MS = 6 * 3600 * 1000

interface Known {
  remaining: number
  /** When the registry's window has passed and the count no longer holds: unknown again, i.e. full. */
  until: number
}

/** The credentials of a registry at `origin` as the quota keeps them; no credentials is one anonymous choice. */
export function credentialsOf(origin: string, list: readonly Credentials[] | undefined): Credential[] {
  if (!list || list.length === 0) return [{ key: `${origin}\u0000anonymous`, label: 'anonymous' }]
  return list.map((c, i) => ({
    credentials: c,
    // A hash, so two accounts never share tokens or counts while nothing of the secret is kept in a key.
    key: `${origin}\u0000${createHash('sha256')
      .update(JSON.stringify([c.username ?? null, c.password ?? null, c.token ?? null]))
      .digest('hex')
      .slice(0, 32)}`,
    label: c.username ?? `#${i + 1}`,
  }))
}

/** `76;w=21600` → 76 and 21600 s; undefined when the header is absent or not a count. */
export function parseRateLimit(value: string | undefined): { remaining: number; windowMs?: number } | undefined {
  if (value === undefined) return undefined
  const m = /^\s*(\d{1,12})\s*(?:;(.*))?$/.exec(value)
  if (!m) return undefined
  const w = /(?:^|;)\s*w\s*=\s*(\d{1,9})\s*(?:;|$)/.exec(m[2] ?? '')
  return { remaining: Number(m[1]), windowMs: w ? Number(w[1]) * 1000 : undefined }
}

export class QuotaBook {
  private readonly known = new Map<string, Known>()

  constructor(private readonly now: () => number = Date.now) {}

  /** What a registry said is left for this credential; it holds for the registry's window. */
  note(c: Credential, remaining: number, windowMs = DEFAULT_WINDOW_MS): void {
    this.known.set(c.key, { remaining, until: this.now() + windowMs })
  }

  /** The count last heard, or undefined: never heard, or its window has passed. */
  remaining(c: Credential): number | undefined {
    const k = this.known.get(c.key)
    if (!k) return undefined
    if (this.now() >= k.until) {
      this.known.delete(c.key)
      return undefined
    }
    return k.remaining
  }

  /** The credential to ask with: most quota left, unknown counting as full, ties to the first listed. */
  pick<C extends Credential>(list: readonly C[]): C {
    let best = list[0]
    if (best === undefined) throw new Error('internal: no credential to pick from')
    let bestLeft = this.remaining(best) ?? Infinity
    for (const c of list.slice(1)) {
      const left = this.remaining(c) ?? Infinity
      if (left > bestLeft) [best, bestLeft] = [c, left]
    }
    return best
  }

  /** What the best of `list` has left (undefined: unknown, which counts as full). */
  best(list: readonly Credential[]): number | undefined {
    return this.remaining(this.pick(list))
  }

  /** Whether even the best credential has less than `reserve` left; a reserve of 0 is never reached. */
  low(list: readonly Credential[], reserve: number): boolean {
    const left = this.best(list)
    return reserve > 0 && left !== undefined && left < reserve
  }
}
