// The registry's /v2/ API, read-only: the base endpoint, manifests (with Accept negotiation and Docker Hub's
// rate-limit headers), blobs (redirected to the CDN, or served here with Range support) and the paginated tags list.
import type http from 'node:http'
import type { Cdn } from './cdn.js'
import type { Content } from './content.js'
import { jsonReply, ociError, redirectReply, serveBytes, textReply, type Reply } from './reply.js'
import type { FakeRegistryOptions } from './start.js'
import type { TokenRealm } from './token-realm.js'

const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const TAG_RE = /^[\w][\w.-]{0,127}$/

export type RegistryOptions = Pick<FakeRegistryOptions, 'redirectBlobs' | 'rateLimit' | 'scopedBlobs' | 'referrersApi'>

function acceptable(accept: string | undefined, mediaType: string): boolean {
  if (!accept) return true
  const types = accept
    .split(',')
    .map((s) => (s.split(';')[0] ?? '').trim().toLowerCase())
    .filter((s) => s !== '')
  if (types.length === 0) return true
  return types.includes('*/*') || types.includes(mediaType.toLowerCase())
}

export class RegistryRoutes {
  /** a copy: the fake counts it down as it serves manifests */
  private readonly rate: { limit: number; remaining: number; window: number } | undefined
  private readonly perUser: Map<string, number> | undefined
  private readonly redirectBlobs: boolean
  private readonly scopedBlobs: boolean
  private readonly referrersApi: boolean

  constructor(
    opts: RegistryOptions,
    private readonly content: Content,
    private readonly realm: TokenRealm,
    private readonly cdn: Cdn,
  ) {
    this.rate = opts.rateLimit
      ? { limit: opts.rateLimit.limit, remaining: opts.rateLimit.remaining, window: opts.rateLimit.window ?? 21600 }
      : undefined
    this.perUser = opts.rateLimit?.perUser ? new Map(Object.entries(opts.rateLimit.perUser)) : undefined
    this.redirectBlobs = opts.redirectBlobs ?? true
    this.scopedBlobs = opts.scopedBlobs ?? false
    this.referrersApi = opts.referrersApi ?? true
  }

  get rateLimitRemaining(): number | undefined {
    return this.rate?.remaining
  }

  remainingOf(user: string): number | undefined {
    return this.perUser?.get(user)
  }

  setRemaining(n: number, user?: string): void {
    if (user !== undefined) this.perUser?.set(user, n)
    else if (this.rate) this.rate.remaining = n
  }

  route(req: http.IncomingMessage, u: URL): Reply {
    const method = req.method ?? 'GET'
    const p = u.pathname
    if (p === '/v2/' || p === '/v2') {
      if (method !== 'GET' && method !== 'HEAD') return ociError(405, 'UNSUPPORTED', 'method not allowed')
      return this.realm.authorize(req, undefined) ?? jsonReply(200, {})
    }
    if (!p.startsWith('/v2/')) return textReply(404, '404 page not found\n')
    const rest = p.slice(4)
    let m: RegExpExecArray | null
    let kind: 'manifest' | 'blob' | 'tags' | 'referrers'
    if ((m = /^(.+)\/manifests\/([^/]+)$/.exec(rest))) kind = 'manifest'
    else if ((m = /^(.+)\/referrers\/([^/]+)$/.exec(rest))) kind = 'referrers'
    else if ((m = /^(.+)\/blobs\/([^/]+)$/.exec(rest))) kind = 'blob'
    else if ((m = /^(.+)\/tags\/list$/.exec(rest))) kind = 'tags'
    else return textReply(404, '404 page not found\n')
    const name = m[1]!
    if (!NAME_RE.test(name)) return ociError(400, 'NAME_INVALID', 'invalid repository name', { name })
    if (method !== 'GET' && method !== 'HEAD') return ociError(405, 'UNSUPPORTED', 'the operation is unsupported')
    const denied = this.realm.authorize(req, name)
    if (denied) return denied
    const ref = m[2] === undefined ? '' : decodeURIComponent(m[2])
    if (kind === 'tags') return this.tagsList(name, u.searchParams)
    if (kind === 'referrers') {
      if (!this.referrersApi) return textReply(404, '404 page not found\n')
      // The spec's filter: applied, and said so, when asked.
      const artifactType = u.searchParams.get('artifactType')
      const all = this.content.referrers(name, ref)
      const manifests = artifactType === null ? all : all.filter((m) => m.artifactType === artifactType)
      const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }
      const filtered: Record<string, string> = artifactType === null ? {} : { 'oci-filters-applied': 'artifactType' }
      return jsonReply(200, index, { 'content-type': 'application/vnd.oci.image.index.v1+json', ...filtered })
    }
    if (kind === 'manifest') return this.manifest(req, name, ref)
    return this.blob(req, ref, name)
  }

  private tagsList(name: string, params: URLSearchParams): Reply {
    const all = this.content.tagNames(name)
    if (!all) return ociError(404, 'NAME_UNKNOWN', 'repository name not known to registry', { name })
    let tags = all.sort()
    const last = params.get('last')
    if (last !== null) tags = tags.filter((t) => t > last)
    const nParam = params.get('n')
    const headers: Record<string, string> = {}
    if (nParam !== null) {
      const n = Number(nParam)
      if (!Number.isInteger(n) || n < 0)
        return ociError(400, 'PAGINATION_NUMBER_INVALID', 'invalid number of results requested', { n: nParam })
      if (tags.length > n) {
        tags = tags.slice(0, n)
        const lastTag = tags[tags.length - 1]
        if (lastTag !== undefined) {
          headers['link'] = `</v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(lastTag)}>; rel="next"`
        }
      }
    }
    return jsonReply(200, { name, tags }, headers)
  }

  /** Every manifest answer carries the rate-limit headers, as Docker Hub's do; only a GET served with 200 counts. */
  private manifest(req: http.IncomingMessage, name: string, ref: string): Reply {
    const method = req.method ?? 'GET'
    const rate = this.rate
    // Docker Hub counts per account: the one the token was issued to, else the anonymous count.
    const user = this.perUser ? this.realm.userOf(req) : undefined
    const count = {
      get: () => (user !== undefined && this.perUser?.has(user) ? this.perUser.get(user)! : (rate?.remaining ?? 0)),
      spend: () => {
        if (user !== undefined && this.perUser?.has(user)) this.perUser.set(user, this.perUser.get(user)! - 1)
        else if (rate) rate.remaining--
      },
    }
    const rl = (): Record<string, string> =>
      rate
        ? { 'ratelimit-limit': `${rate.limit};w=${rate.window}`, 'ratelimit-remaining': `${Math.max(0, count.get())};w=${rate.window}` }
        : {}
    const isDigest = ref.includes(':')
    if (isDigest && !DIGEST_RE.test(ref)) {
      return ociError(400, 'DIGEST_INVALID', 'provided digest did not match uploaded content', { digest: ref }, rl())
    }
    if (!isDigest && !TAG_RE.test(ref)) return ociError(400, 'TAG_INVALID', 'manifest tag did not match URI', { tag: ref }, rl())
    if (rate && method === 'GET' && count.get() <= 0) {
      return ociError(429, 'TOOMANYREQUESTS', 'You have reached your pull rate limit.', null, rl())
    }
    const digest = isDigest ? ref : this.content.tagTarget(name, ref)
    const man = digest ? this.content.manifest(name, digest) : undefined
    if (!digest || !man || !acceptable(req.headers.accept, man.mediaType)) {
      return ociError(404, 'MANIFEST_UNKNOWN', 'manifest unknown', { name, reference: ref }, rl())
    }
    if (rate && method === 'GET') count.spend()
    return {
      status: 200,
      headers: { 'content-type': man.mediaType, 'docker-content-digest': digest, etag: `"${digest}"`, ...rl() },
      body: man.body,
    }
  }

  private blob(req: http.IncomingMessage, ref: string, name: string): Reply {
    if (!DIGEST_RE.test(ref)) return ociError(400, 'DIGEST_INVALID', 'invalid digest', { digest: ref })
    const bytes = this.content.blob(ref, this.scopedBlobs ? name : undefined)
    if (!bytes) return ociError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest: ref })
    if (req.method === 'HEAD') {
      return {
        status: 200,
        headers: { 'content-type': 'application/octet-stream', 'docker-content-digest': ref, 'accept-ranges': 'bytes' },
        body: bytes,
      }
    }
    if (this.redirectBlobs) return redirectReply(this.cdn.signedUrl(ref))
    return serveBytes(bytes, req.headers.range, { 'docker-content-digest': ref, etag: `"${ref}"` })
  }
}
