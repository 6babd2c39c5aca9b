import type { Services } from '../../app-types.js'
import { RegmirrorError } from '../../errors.js'
import { renderPage } from '../../status/page.js'
import { PAGE_CSP } from '../../status/page-assets.js'
import { finish } from '../respond.js'
import type { RequestContext } from './context.js'

/**
 * `GET /` (the status page) and `GET /api/status` (its data as JSON). Off with `ui.enabled: false`
 * (then 404, as before there was a page). With `auth.htpasswd` the same credentials as for pulls
 * are asked for, and the page lists only the repositories the client may pull.
 */
export async function handleStatus(ctx: RequestContext, kind: 'ui' | 'status', s: Services): Promise<void> {
  ctx.kind = 'other'
  // A replica's signed peer path is for blobs only.
  if (!s.config.ui.enabled || ctx.peer) throw new RegmirrorError('NAME_UNKNOWN', 'not a registry API path')
  const who = await s.access.identify({ authorization: header(ctx.req.headers.authorization), address: ctx.req.socket.remoteAddress ?? '' })
  const snapshot = await s.statusReport.snapshot((upstream, repo) => s.access.may(who, upstream, repo))
  const html = kind === 'ui'
  const body = html ? renderPage(snapshot) : JSON.stringify(snapshot)
  ctx.res.writeHead(200, {
    'content-type': html ? 'text/html; charset=utf-8' : 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'content-security-policy': PAGE_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
  })
  ctx.bytes = Buffer.byteLength(body)
  finish(ctx.res, ctx.req.method === 'HEAD' ? undefined : body)
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}
