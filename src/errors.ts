/**
 * One error class for the whole program. `code` is stable and is what callers match on;
 * the message is for humans and may change. The OCI wire code is derived from `code` in
 * one place (http/respond.ts), so internal failures never leak their details by accident.
 */
export type ErrorCode =
  // Client-facing, named after the OCI distribution-spec codes.
  | 'BLOB_UNKNOWN'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_UNKNOWN'
  | 'NAME_INVALID'
  | 'TAG_INVALID'
  | 'DIGEST_INVALID'
  | 'MANIFEST_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'UNAVAILABLE'
  | 'RANGE_NOT_SATISFIABLE'
  | 'PAGINATION_NUMBER_INVALID'
  | 'UPSTREAM_UNKNOWN'
  // Internal: an upstream misbehaved. Mapped to 502/503 on the wire.
  | 'UPSTREAM_ERROR'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_OFFLINE'
  | 'DIGEST_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'BLOB_SIZE_UNKNOWN'
  | 'MANIFEST_TOO_LARGE'
  | 'REDIRECT_INVALID'
  | 'ADDRESS_DENIED'
  | 'UPSTREAM_MANIFEST_INVALID'
  | 'REALM_DENIED'
  | 'CACHE_IO'
  | 'INTERNAL'

export class RegmirrorError extends Error {
  readonly code: ErrorCode
  /** Extra, non-secret facts for the OCI error `detail` and for logs. */
  readonly detail?: unknown
  /** For TOOMANYREQUESTS: the upstream's Retry-After, passed on to the client. */
  readonly retryAfter?: string

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; detail?: unknown; retryAfter?: string } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'RegmirrorError'
    this.code = code
    this.detail = opts.detail
    this.retryAfter = opts.retryAfter
  }
}

export function isRegmirrorError(err: unknown, code?: ErrorCode): err is RegmirrorError {
  return err instanceof RegmirrorError && (code === undefined || err.code === code)
}

/**
 * Upstream answers that are wrong rather than unavailable: refused, counted and logged, and
 * never cached.
 */
export const REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'DIGEST_MISMATCH',
  'SIZE_MISMATCH',
  'BLOB_SIZE_UNKNOWN',
  'MANIFEST_TOO_LARGE',
  'UPSTREAM_MANIFEST_INVALID',
  'REDIRECT_INVALID',
  'ADDRESS_DENIED',
  'REALM_DENIED',
])

/**
 * Upstream failures after which a cached copy may be served instead (stale-if-error). A wrong
 * answer is as much a failure of the upstream as no answer: it never becomes the client's error.
 */
export function isUpstreamFailure(err: unknown): boolean {
  if (!(err instanceof RegmirrorError)) return false
  return (
    err.code === 'UPSTREAM_ERROR' ||
    err.code === 'UPSTREAM_TIMEOUT' ||
    err.code === 'UPSTREAM_OFFLINE' ||
    err.code === 'UNAVAILABLE' ||
    err.code === 'TOOMANYREQUESTS' ||
    REFUSALS.has(err.code)
  )
}
