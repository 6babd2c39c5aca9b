import type { ServerResponse } from 'node:http'
import { toWire } from '../errors.js'

/** Sends the OCI error answer for `err` (errors.ts's table decides status and code). */
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
