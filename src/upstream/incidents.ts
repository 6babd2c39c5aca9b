import { RegmirrorError } from '../errors.js'

/** The last failure of one upstream, as an operator may see it (the status page). */
export interface Incident {
  code: string
  /** Our own message, as clients get it on the wire: never a token, a credential or a raw upstream body. */
  message: string
  /** Milliseconds since the epoch. */
  at: number
}

// Messages quote at most short pieces of an upstream's answer (a media type); this bounds them anyway.
const MAX_MESSAGE = 300

/**
 * The last failure of each upstream: what the status page shows beside online/offline. Only our
 * error's code and message are kept, the same a client would get; the cause (which may carry an
 * address or a library's text) stays in the log.
 */
export class UpstreamIncidents {
  private readonly last = new Map<string, Incident>()

  note(upstream: string, err: unknown, at = Date.now()): void {
    const e =
      err instanceof RegmirrorError && err.class !== 'internal' ? err : new RegmirrorError('UPSTREAM_ERROR', `upstream ${upstream} failed`)
    this.last.set(upstream, { code: e.code, message: e.message.slice(0, MAX_MESSAGE), at })
  }

  /** An answer that is a failure without being an error yet (5xx, 429 after the retries). */
  noteStatus(upstream: string, status: number, at = Date.now()): void {
    const code = status === 429 ? 'TOOMANYREQUESTS' : 'UPSTREAM_ERROR'
    this.last.set(upstream, { code, message: `upstream ${upstream} answered ${status}`, at })
  }

  lastOf(upstream: string): Incident | undefined {
    return this.last.get(upstream)
  }
}
