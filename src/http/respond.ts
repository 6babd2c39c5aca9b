import { toWire } from '../errors.js'
import type { Res } from './handlers/context.js'

/** Ends a response with `body`, or with none (HEAD, 304). */
export function finish(res: Res, body?: string | Buffer): void {
  if (body === undefined) res.end()
  else res.end(body)
}

/** The connection closes after this response (HTTP/1.1; an HTTP/2 stream holds no connection). */
export function closeAfter(res: Res): void {
  if ('shouldKeepAlive' in res) res.shouldKeepAlive = false
}

/** Sends the OCI error answer for `err` (errors.ts's table decides status and code). */
export function sendError(res: Res, err: unknown, extraHeaders: Record<string, string> = {}): number {
  const { status, body, retryAfter, challenge } = toWire(err)
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
  if (challenge !== undefined) headers['www-authenticate'] = challenge
  res.writeHead(status, headers)
  finish(res, res.req.method === 'HEAD' ? undefined : body)
  return status
}
