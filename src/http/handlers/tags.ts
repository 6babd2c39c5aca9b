import type { Services } from '../../app-types.js'
import { RegmirrorError } from '../../errors.js'
import { upstreamFailure } from '../../proxy/upstream-errors.js'
import { header } from '../../upstream/client.js'
import type { Route } from '../router.js'
import type { RequestContext } from './context.js'

const MAX_TAGS_BODY = 16 * 1024 * 1024

/** Tag lists are passed through (with `n` and `last`); they are not cached. */
export async function handleTags(ctx: RequestContext, route: Extract<Route, { kind: 'tags' }>, s: Services): Promise<void> {
  const { up, repo, name } = route
  const url = new URL(ctx.req.url ?? '/', 'http://x')
  const q = new URLSearchParams()
  const n = url.searchParams.get('n')
  const last = url.searchParams.get('last')
  if (n !== null) {
    if (!/^\d{1,6}$/.test(n)) {
      throw new RegmirrorError('PAGINATION_NUMBER_INVALID', 'n must be a number of results', { detail: { n: n.slice(0, 20) } })
    }
    q.set('n', n)
  }
  if (last !== null) q.set('last', last.slice(0, 256))
  const qs = q.toString()
  const res = await s.upstream.request(up, { method: 'GET', path: `/v2/${repo}/tags/list${qs ? `?${qs}` : ''}`, repo })
  if (res.status !== 200) throw await upstreamFailure(up, res, 'NAME_UNKNOWN')
  const body = await s.upstream.readSmall(up, res, MAX_TAGS_BODY, () => new RegmirrorError('UPSTREAM_ERROR', 'tag list too large'))
  ctx.cache = 'miss'
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': body.length,
    'docker-distribution-api-version': 'registry/2.0',
  }
  // The next-page link names the upstream's path; point it back at this mirror's.
  const link = header(res.headers, 'link')
  const m = link ? /<([^>]*)>(.*)/.exec(link) : null
  if (m) {
    const next = new URL(m[1] as string, 'http://x')
    const ns = url.searchParams.get('ns')
    if (ns !== null) next.searchParams.set('ns', ns)
    headers.link = `</v2/${name}/tags/list${next.search}>${m[2] ?? ''}`
  }
  ctx.res.writeHead(200, headers)
  ctx.bytes = body.length
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body)
}
