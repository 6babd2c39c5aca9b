import type { Services } from '../../app-types.js'
import { OCI_INDEX } from '../../oci/media-types.js'
import { referrersIndex } from '../../proxy/referrers-service.js'
import type { Route } from '../router.js'
import { finish } from '../respond.js'
import type { RequestContext } from './context.js'

/** `GET /v2/<name>/referrers/<digest>[?artifactType=…]`: the referrers list, of that artifact type when asked. */
export async function handleReferrers(ctx: RequestContext, route: Extract<Route, { kind: 'referrers' }>, s: Services): Promise<void> {
  const artifactType = new URL(ctx.req.url ?? '/', 'http://x').searchParams.get('artifactType')
  const answer = await s.referrers.list(route.up, route.repo, route.digest, artifactType ?? undefined)
  ctx.cache = answer.cache
  const body = referrersIndex(answer.manifests)
  const headers: Record<string, string | number> = {
    'content-type': OCI_INDEX,
    'content-length': body.length,
    'docker-distribution-api-version': 'registry/2.0',
    'x-regmirror-cache': answer.cache,
  }
  if (artifactType !== null) headers['oci-filters-applied'] = 'artifactType'
  ctx.res.writeHead(200, headers)
  ctx.bytes = body.length
  finish(ctx.res, ctx.req.method === 'HEAD' ? undefined : body)
}
