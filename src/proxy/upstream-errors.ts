import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError, type ErrorCode } from '../errors.js'
import { header, type UpstreamResponse } from '../upstream/client.js'

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
