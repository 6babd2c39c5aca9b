import type { Services } from '../../app-types.js'
import { parseAccept } from '../../oci/media-types.js'
import type { Route } from '../router.js'
import type { RequestContext } from './context.js'

export async function handleManifest(ctx: RequestContext, route: Extract<Route, { kind: 'manifest' }>, s: Services): Promise<void> {
  const { up, repo, ref } = route
  const r = ref.kind === 'tag' ? await s.tags.resolve(up, repo, ref.tag) : await s.manifests.get(up, repo, ref.digest)
  ctx.cache = r.cache
  const m = await s.manifests.forAccept(r.manifest, parseAccept(ctx.req.headers.accept), up, repo)
  s.activity.manifestServed(up.name, repo, ref.kind === 'tag' ? ref.tag : undefined, m)
  const headers: Record<string, string | number> = {
    'content-type': m.mediaType,
    'content-length': m.body.length,
    'docker-content-digest': m.digest,
    etag: `"${m.digest}"`,
    'docker-distribution-api-version': 'registry/2.0',
    'x-regmirror-cache': r.cache,
  }
  if (r.cache === 'stale') headers.warning = '110 - "Response is Stale"'
  if (ref.kind === 'digest') headers['cache-control'] = 'public, max-age=31536000, immutable'
  if (ctx.req.headers['if-none-match'] === `"${m.digest}"`) {
    ctx.res.writeHead(304, headers)
    ctx.res.end()
    return
  }
  ctx.res.writeHead(200, headers)
  if (ctx.req.method === 'HEAD') {
    ctx.res.end()
    return
  }
  ctx.bytes = m.body.length
  s.metrics.servedBytes.inc({ source: r.cache === 'miss' ? 'upstream' : 'cache' }, m.body.length)
  ctx.res.end(m.body)
}
