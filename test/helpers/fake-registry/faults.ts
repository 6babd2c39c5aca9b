// Which fault a request gets: the fault kinds, request matching, and arming (in order, each for N requests or for
// good). What each kind does to the answer is in fault-effects.ts.
import type { Reply } from './reply.js'
import type { ServerName } from './server.js'

/**
 * Which requests a fault or a count applies to. All given fields must match.
 * `path`: a string matches the path with its query or the path without it, exactly; a RegExp is tested
 * against the path with its query. `method` is compared case-insensitively.
 */
export interface RequestMatch {
  server?: ServerName
  method?: string
  path?: string | RegExp
}

interface FaultCommon {
  match?: RequestMatch
  /** apply to the first N matching requests only, then disarm (default unlimited) */
  times?: number
}

/**
 * Faults apply in the order added; the first armed fault that matches *and applies* wins.
 * `status`, `redirect`, `redirectLoop`, `delayHeaders` apply to any matching request.
 * Body faults (`slow`, `stall`, `drop`, `truncate`, `extra`, `wrongBytes`) apply only to GET responses with
 * status 200/206 and a non-empty body (so a 401, a 307 or a HEAD doesn't use up `times`); their byte offsets
 * count from the start of that response's body (a Range response's body included).
 */
export type Fault = FaultCommon &
  (
    | { kind: 'status'; status: number; retryAfter?: string }
    | { kind: 'slow'; bytesPerSecond: number }
    | { kind: 'stall'; afterBytes: number }
    | { kind: 'drop'; afterBytes: number }
    | { kind: 'truncate'; afterBytes: number }
    | { kind: 'extra'; bytes: number }
    | { kind: 'wrongBytes' }
    | { kind: 'redirectLoop' }
    | { kind: 'redirect'; location: string }
    | { kind: 'delayHeaders'; ms: number }
    /** answers this instead (any request; Content-Length is the body's unless `chunked`) */
    | { kind: 'reply'; status: number; headers?: Record<string, string>; body?: Buffer | string; chunked?: boolean }
    /** the normal answer with one header replaced (or removed, with null) */
    | { kind: 'header'; name: string; value: string | null }
    /** a 200 of random bytes without end and without a Content-Length (any request) */
    | { kind: 'endless' }
  )

const BODY_FAULTS = new Set<Fault['kind']>(['slow', 'stall', 'drop', 'truncate', 'extra', 'wrongBytes'])

export function matches(m: RequestMatch | undefined, server: ServerName, method: string, path: string): boolean {
  if (!m) return true
  if (m.server !== undefined && m.server !== server) return false
  if (m.method !== undefined && m.method.toUpperCase() !== method.toUpperCase()) return false
  if (m.path !== undefined) {
    if (typeof m.path === 'string') {
      const q = path.indexOf('?')
      const bare = q === -1 ? path : path.slice(0, q)
      if (m.path !== path && m.path !== bare) return false
    } else {
      m.path.lastIndex = 0
      if (!m.path.test(path)) return false
    }
  }
  return true
}

interface Armed {
  f: Fault
  left: number
}

export class FaultSet {
  private armed: Armed[] = []

  add(f: Fault): void {
    this.armed.push({ f, left: f.times ?? Infinity })
  }

  clear(): void {
    this.armed = []
  }

  /**
   * The fault this request gets, if any, and one use of it spent. `answer` is the route's reply: a body fault
   * needs it to know whether it applies, so the route may run here, before the fault is chosen.
   */
  async choose(server: ServerName, method: string, path: string, answer: () => Promise<Reply>): Promise<Fault | undefined> {
    for (const a of [...this.armed]) {
      if (!matches(a.f.match, server, method, path)) continue
      if (BODY_FAULTS.has(a.f.kind)) {
        const r = await answer()
        if (method !== 'GET' || (r.status !== 200 && r.status !== 206) || r.body.length === 0) continue
      }
      return this.take(a)
    }
    return undefined
  }

  private take(a: Armed): Fault {
    if (Number.isFinite(a.left)) {
      a.left--
      if (a.left <= 0) this.armed = this.armed.filter((x) => x !== a)
    }
    return a.f
  }
}
