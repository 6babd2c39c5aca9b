import type { Services } from '../../app-types.js'
import type { Visible } from '../../proxy/catalog-service.js'
import type { Route } from '../router.js'
import { finish } from '../respond.js'
import type { RequestContext } from './context.js'

/** `GET /v2/_catalog?n=&last=`: one page of the repositories the cache holds, and a Link to the next as the distribution spec says. */
export async function handleCatalog(
  ctx: RequestContext,
  route: Extract<Route, { kind: 'catalog' }>,
  s: Services,
  visible: Visible,
): Promise<void> {
  const url = new URL(ctx.req.url ?? '/', 'http://x')
  const page = await s.catalog.page(visible, { n: url.searchParams.get('n'), last: url.searchParams.get('last') }, route.up)
  const body = Buffer.from(JSON.stringify({ repositories: page.repositories }))
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': body.length,
    'docker-distribution-api-version': 'registry/2.0',
  }
  if (page.next) {
    const next = new URLSearchParams({ last: page.next.last, n: String(page.next.n) })
    const ns = url.searchParams.get('ns')
    if (ns !== null) next.set('ns', ns)
    headers.link = `</v2/_catalog?${next.toString()}>; rel="next"`
  }
  ctx.res.writeHead(200, headers)
  ctx.bytes = body.length
  finish(ctx.res, ctx.req.method === 'HEAD' ? undefined : body)
}
