import type { Services } from '../../app-types.js'
import type { Route } from '../router.js'
import { finish } from '../respond.js'
import type { RequestContext } from './context.js'

/** `GET /v2/<name>/tags/list`: the page from the tag list service, its next-page link pointed back at this mirror. */
export async function handleTags(ctx: RequestContext, route: Extract<Route, { kind: 'tags' }>, s: Services): Promise<void> {
  const url = new URL(ctx.req.url ?? '/', 'http://x')
  const page = await s.tagLists.list(route.up, route.repo, { n: url.searchParams.get('n'), last: url.searchParams.get('last') })
  ctx.cache = page.cache
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': page.body.length,
    'docker-distribution-api-version': 'registry/2.0',
    'x-regmirror-cache': page.cache,
  }
  if (page.next) {
    // The upstream's link names its own path; the client must come back here, with the same ns.
    const next = new URL(page.next.search, 'http://x')
    const ns = url.searchParams.get('ns')
    if (ns !== null) next.searchParams.set('ns', ns)
    headers.link = `</v2/${route.name}/tags/list${next.search}>${page.next.rel}`
  }
  ctx.res.writeHead(200, headers)
  ctx.bytes = page.body.length
  finish(ctx.res, ctx.req.method === 'HEAD' ? undefined : page.body)
}
