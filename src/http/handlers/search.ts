import type { Services } from '../../app-types.js'
import type { Visible } from '../../proxy/catalog-service.js'
import { finish } from '../respond.js'
import type { RequestContext } from './context.js'

/**
 * `/v1/_ping`: the Docker daemon pings a registry before searching it (HTTPS first, then plain HTTP
 * for an insecure registry). Nothing secret is in the answer, so it needs no credentials.
 * Standalone: the daemon is not to look for a separate index to authenticate against.
 */
export function handlePing(ctx: RequestContext): void {
  const body = '{}'
  ctx.res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': body.length,
    'x-docker-registry-standalone': 'true',
  })
  finish(ctx.res, ctx.req.method === 'HEAD' ? undefined : body)
}

/** `/v1/search?q=&n=&page=`: the search service's answer; `x-regmirror-search` says where it came from. */
export async function handleSearch(ctx: RequestContext, s: Services, visible: Visible): Promise<void> {
  const url = new URL(ctx.req.url ?? '/', 'http://x')
  const p = url.searchParams
  const answer = await s.search.search({ q: p.get('q'), n: p.get('n'), page: p.get('page') }, visible)
  ctx.cache = answer.source === 'cache' ? 'hit' : answer.source === 'local' ? 'stale' : 'miss'
  const body = Buffer.from(JSON.stringify(answer.results))
  ctx.res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'x-regmirror-search': answer.source })
  ctx.bytes = body.length
  finish(ctx.res, ctx.req.method === 'HEAD' ? undefined : body)
}
