import type { ServerResponse } from 'node:http'
import { RegmirrorError, type ErrorCode } from '../errors.js'

interface WireError {
  status: number
  code: string
}

/** The one place internal error codes become OCI error codes and HTTP statuses. */
const WIRE: Record<ErrorCode, WireError> = {
  BLOB_UNKNOWN: { status: 404, code: 'BLOB_UNKNOWN' },
  MANIFEST_UNKNOWN: { status: 404, code: 'MANIFEST_UNKNOWN' },
  NAME_UNKNOWN: { status: 404, code: 'NAME_UNKNOWN' },
  UPSTREAM_UNKNOWN: { status: 404, code: 'NAME_UNKNOWN' },
  NAME_INVALID: { status: 400, code: 'NAME_INVALID' },
  TAG_INVALID: { status: 400, code: 'TAG_INVALID' },
  DIGEST_INVALID: { status: 400, code: 'DIGEST_INVALID' },
  MANIFEST_INVALID: { status: 400, code: 'MANIFEST_INVALID' },
  UNAUTHORIZED: { status: 401, code: 'UNAUTHORIZED' },
  DENIED: { status: 403, code: 'DENIED' },
  UNSUPPORTED: { status: 405, code: 'UNSUPPORTED' },
  RANGE_NOT_SATISFIABLE: { status: 416, code: 'RANGE_INVALID' },
  // Not in the OCI table; CNCF distribution's code for a bad `n`.
  PAGINATION_NUMBER_INVALID: { status: 400, code: 'PAGINATION_NUMBER_INVALID' },
  TOOMANYREQUESTS: { status: 429, code: 'TOOMANYREQUESTS' },
  UNAVAILABLE: { status: 503, code: 'UNAVAILABLE' },
  UPSTREAM_TIMEOUT: { status: 503, code: 'UNAVAILABLE' },
  UPSTREAM_OFFLINE: { status: 503, code: 'UNAVAILABLE' },
  // The upstream misbehaved: a gateway error, and the client may retry.
  UPSTREAM_ERROR: { status: 502, code: 'UNAVAILABLE' },
  DIGEST_MISMATCH: { status: 502, code: 'UNAVAILABLE' },
  SIZE_MISMATCH: { status: 502, code: 'UNAVAILABLE' },
  BLOB_SIZE_UNKNOWN: { status: 502, code: 'UNAVAILABLE' },
  MANIFEST_TOO_LARGE: { status: 502, code: 'UNAVAILABLE' },
  UPSTREAM_MANIFEST_INVALID: { status: 502, code: 'UNAVAILABLE' },
  REDIRECT_INVALID: { status: 502, code: 'UNAVAILABLE' },
  ADDRESS_DENIED: { status: 502, code: 'UNAVAILABLE' },
  REALM_DENIED: { status: 502, code: 'UNAVAILABLE' },
  CACHE_IO: { status: 500, code: 'UNKNOWN' },
  INTERNAL: { status: 500, code: 'UNKNOWN' },
}

export function toWire(err: unknown): { status: number; body: string; retryAfter?: string } {
  const e = err instanceof RegmirrorError ? err : new RegmirrorError('INTERNAL', 'internal error')
  const wire = WIRE[e.code]
  // Internal errors say nothing about their cause on the wire; the log has it.
  const message = wire.status === 500 ? 'internal error' : e.message
  const detail = wire.status === 500 ? undefined : e.detail
  const body = JSON.stringify({ errors: [{ code: wire.code, message, detail: detail ?? null }] })
  return { status: wire.status, body, retryAfter: e.retryAfter }
}

export function sendError(res: ServerResponse, err: unknown, extraHeaders: Record<string, string> = {}): number {
  const { status, body, retryAfter } = toWire(err)
  if (res.headersSent) {
    // Headers (and maybe part of a body) are out: the only honest signal left is a broken connection.
    res.destroy(err instanceof Error ? err : undefined)
    return status
  }
  const headers: Record<string, string | number> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'docker-distribution-api-version': 'registry/2.0',
    ...extraHeaders,
  }
  if (retryAfter !== undefined) headers['retry-after'] = retryAfter
  res.writeHead(status, headers)
  res.end(res.req.method === 'HEAD' ? undefined : body)
  return status
}
