import { errors as undiciErrors, type Dispatcher } from 'undici'
import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError, type ErrorCode } from '../errors.js'
import type { Endpoint } from './pool.js'

export type Headers = Record<string, string | string[] | undefined>

export interface UpstreamResponse {
  status: number
  headers: Headers
  body: Dispatcher.ResponseData['body']
  /** The URL that finally answered (after redirects), without its query: for logs only. */
  where: string
  /** The endpoint of the upstream's pool that answered (client.ts `request`). */
  endpoint?: Endpoint
}

export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Content-Length as a byte count, or undefined when absent or not one. */
export function contentLength(res: Pick<UpstreamResponse, 'headers'>): number | undefined {
  const v = header(res.headers, 'content-length')
  if (v === undefined || !/^\d{1,16}$/.test(v)) return undefined
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : undefined
}

/**
 * Reads a whole upstream body, refusing it (with `tooLarge()`) as soon as it passes `limit`
 * bytes, and giving up once the whole body took longer than `deadlineMs`: a hostile or broken
 * upstream can neither make the mirror buffer without bound nor hold a request by dripping a
 * small body forever.
 */
export async function readBounded(
  up: UpstreamConfig,
  res: Pick<UpstreamResponse, 'body'>,
  limit: number,
  tooLarge: () => Error,
  deadlineMs: number,
): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  let timedOut = false
  const timer = deadlineMs > 0 ? setTimeout(() => ((timedOut = true), res.body.destroy()), deadlineMs) : undefined
  try {
    for await (const chunk of res.body) {
      n += (chunk as Buffer).length
      if (n > limit) {
        res.body.destroy()
        throw tooLarge()
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    if (timedOut) {
      throw new RegmirrorError('UPSTREAM_TIMEOUT', `the body from ${up.name} did not arrive within ${deadlineMs} ms`, { cause: err })
    }
    // A connection cut mid-body is the upstream failing, like one refused before it.
    throw toUpstreamError(up, err)
  } finally {
    clearTimeout(timer)
  }
  return Buffer.concat(chunks)
}

/** Any failure to talk to an upstream, as our error: a timeout, or the upstream failing. */
export function toUpstreamError(up: UpstreamConfig, err: unknown): RegmirrorError {
  if (err instanceof RegmirrorError) return err
  const timeout =
    err instanceof undiciErrors.ConnectTimeoutError ||
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError
  return new RegmirrorError(timeout ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_ERROR', `upstream ${up.name} ${timeout ? 'timed out' : 'failed'}`, {
    cause: err,
    detail: { upstream: up.name },
  })
}

/**
 * Turns an upstream answer that is not a success into our error, after draining its body.
 * `notFound` is the code a 404 means for this kind of request.
 */
export async function upstreamFailure(up: UpstreamConfig, res: UpstreamResponse, notFound: ErrorCode): Promise<RegmirrorError> {
  await res.body.dump().catch(() => {})
  const detail = { upstream: up.name, status: res.status }
  switch (res.status) {
    case 404:
      return new RegmirrorError(notFound, `not found on ${up.name}`, { detail })
    case 401:
      return new RegmirrorError('UNAUTHORIZED', `${up.name} refused the credentials`, { detail })
    case 403:
      return new RegmirrorError('DENIED', `${up.name} denied access`, { detail })
    case 429:
      return new RegmirrorError('TOOMANYREQUESTS', `${up.name} is rate limiting this mirror`, {
        detail,
        retryAfter: header(res.headers, 'retry-after'),
      })
    default:
      return new RegmirrorError('UPSTREAM_ERROR', `${up.name} answered ${res.status}`, { detail })
  }
}
