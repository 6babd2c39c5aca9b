/**
 * One error class for the whole program, and one table of its codes. `code` is stable and is
 * what callers match on; the message is for humans and may change. Everything that depends on
 * a code (its HTTP status and OCI wire code, whether a cached copy may be served instead,
 * whether the upstream is reachable, whether to count it as a refusal) is read from ERRORS,
 * so adding a code is one line. See docs/architecture.md, "Errors".
 */

/**
 * - `client`: the request itself is wrong or not allowed; the answer is the client's to fix.
 * - `upstream`: the upstream could not be reached or answered with a failure (5xx, 429, a
 *   timeout): it counts against its health, is retried, and a cached copy may be served.
 * - `refusal`: the upstream answered, wrongly or with something unsafe to use: nothing is
 *   cached, it is counted (regmirror_upstream_refused_total), a cached copy may be served.
 * - `internal`: the mirror's own fault; nothing about it goes on the wire.
 */
export type ErrorClass = 'client' | 'upstream' | 'refusal' | 'internal'

interface ErrorSpec {
  status: number
  /** The OCI distribution-spec code on the wire. */
  wire: string
  class: ErrorClass
}

export const ERRORS = {
  BLOB_UNKNOWN: { status: 404, wire: 'BLOB_UNKNOWN', class: 'client' },
  MANIFEST_UNKNOWN: { status: 404, wire: 'MANIFEST_UNKNOWN', class: 'client' },
  // Offline (`offline.enabled`): what the cache does not hold is unknown, and says why.
  OFFLINE_BLOB_UNKNOWN: { status: 404, wire: 'BLOB_UNKNOWN', class: 'client' },
  OFFLINE_MANIFEST_UNKNOWN: { status: 404, wire: 'MANIFEST_UNKNOWN', class: 'client' },
  NAME_UNKNOWN: { status: 404, wire: 'NAME_UNKNOWN', class: 'client' },
  UPSTREAM_UNKNOWN: { status: 404, wire: 'NAME_UNKNOWN', class: 'client' },
  NAME_INVALID: { status: 400, wire: 'NAME_INVALID', class: 'client' },
  TAG_INVALID: { status: 400, wire: 'TAG_INVALID', class: 'client' },
  DIGEST_INVALID: { status: 400, wire: 'DIGEST_INVALID', class: 'client' },
  MANIFEST_INVALID: { status: 400, wire: 'MANIFEST_INVALID', class: 'client' },
  // Not in the OCI table; CNCF distribution's code for a bad `n`.
  PAGINATION_NUMBER_INVALID: { status: 400, wire: 'PAGINATION_NUMBER_INVALID', class: 'client' },
  // A search term or a catalog `last` that is no name fragment (too long, control characters).
  QUERY_INVALID: { status: 400, wire: 'NAME_INVALID', class: 'client' },
  UNAUTHORIZED: { status: 401, wire: 'UNAUTHORIZED', class: 'client' },
  DENIED: { status: 403, wire: 'DENIED', class: 'client' },
  UNSUPPORTED: { status: 405, wire: 'UNSUPPORTED', class: 'client' },
  RANGE_NOT_SATISFIABLE: { status: 416, wire: 'RANGE_INVALID', class: 'client' },
  TOOMANYREQUESTS: { status: 429, wire: 'TOOMANYREQUESTS', class: 'upstream' },
  UNAVAILABLE: { status: 503, wire: 'UNAVAILABLE', class: 'upstream' },
  // This mirror's own limits of an upstream (maxConcurrent, maxRequestsPerSecond): no turn within maxQueueWait.
  UPSTREAM_QUEUE_TIMEOUT: { status: 429, wire: 'TOOMANYREQUESTS', class: 'upstream' },
  UPSTREAM_TIMEOUT: { status: 503, wire: 'UNAVAILABLE', class: 'upstream' },
  UPSTREAM_OFFLINE: { status: 503, wire: 'UNAVAILABLE', class: 'upstream' },
  // An upstream configured offline was about to be contacted; the services answer before that.
  UPSTREAM_NOT_CONTACTED: { status: 503, wire: 'UNAVAILABLE', class: 'upstream' },
  // A gateway error: the client may retry.
  UPSTREAM_ERROR: { status: 502, wire: 'UNAVAILABLE', class: 'upstream' },
  // The outbound proxy could not be reached, refused the credentials or the tunnel: the upstream is unreachable.
  UPSTREAM_PROXY: { status: 502, wire: 'UNAVAILABLE', class: 'upstream' },
  DIGEST_MISMATCH: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  SIZE_MISMATCH: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  BLOB_SIZE_UNKNOWN: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  MANIFEST_TOO_LARGE: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  UPSTREAM_MANIFEST_INVALID: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  REDIRECT_INVALID: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  ADDRESS_DENIED: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  REALM_DENIED: { status: 502, wire: 'UNAVAILABLE', class: 'refusal' },
  CACHE_IO: { status: 500, wire: 'UNKNOWN', class: 'internal' },
  // Object storage (storage/) failed; pulls go on from the hot tier and upstream, so it rarely reaches a client.
  STORAGE_ERROR: { status: 500, wire: 'UNKNOWN', class: 'internal' },
  INTERNAL: { status: 500, wire: 'UNKNOWN', class: 'internal' },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

export class RegmirrorError extends Error {
  readonly code: ErrorCode
  /** Extra, non-secret facts for the OCI error `detail` and for logs. */
  readonly detail?: unknown
  /** For TOOMANYREQUESTS: the upstream's Retry-After, passed on to the client (or the mirror's own, for its queue). */
  readonly retryAfter?: string
  /** For this mirror's own UNAUTHORIZED: the WWW-Authenticate challenge the client gets. */
  readonly challenge?: string

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; detail?: unknown; retryAfter?: string; challenge?: string } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'RegmirrorError'
    this.code = code
    this.detail = opts.detail
    this.retryAfter = opts.retryAfter
    this.challenge = opts.challenge
  }

  get class(): ErrorClass {
    return ERRORS[this.code].class
  }
}

export function isRegmirrorError(err: unknown, code?: ErrorCode): err is RegmirrorError {
  return err instanceof RegmirrorError && (code === undefined || err.code === code)
}

/** The class of any error: ours by its code, anything else is internal. */
export function classOf(err: unknown): ErrorClass {
  return err instanceof RegmirrorError ? err.class : 'internal'
}

/** An upstream answer that was wrong or unsafe: refused, counted and logged, never cached. */
export function isRefusal(err: unknown): err is RegmirrorError {
  return classOf(err) === 'refusal'
}

/**
 * Upstream failures after which a cached copy may be served instead (stale-if-error). A wrong
 * answer is as much a failure of the upstream as no answer: it never becomes the client's error.
 */
export function isUpstreamFailure(err: unknown): err is RegmirrorError {
  const c = classOf(err)
  return c === 'upstream' || c === 'refusal'
}

/** Status, body, Retry-After and challenge of the OCI error answer for any error. */
export function toWire(err: unknown): { status: number; body: string; retryAfter?: string; challenge?: string } {
  const e = err instanceof RegmirrorError ? err : new RegmirrorError('INTERNAL', 'internal error')
  const spec: ErrorSpec = ERRORS[e.code]
  // Internal errors say nothing about their cause on the wire; the log has it.
  const internal = spec.class === 'internal'
  const body = JSON.stringify({
    errors: [{ code: spec.wire, message: internal ? 'internal error' : e.message, detail: internal ? null : (e.detail ?? null) }],
  })
  return { status: spec.status, body, retryAfter: e.retryAfter, challenge: e.challenge }
}

// Failures of the cache disk, as opposed to the upstream: the content can still be served, uncached.
const WRITE_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'EMFILE', 'ENFILE'])

/** A failure to write the cache (full disk, unwritable directory): content is served without being kept. */
export function isWriteError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && WRITE_ERRNOS.has(code)
}
