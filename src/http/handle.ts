import { randomBytes } from 'node:crypto'
import type { AccessRequest } from '../access/access.js'
import type { Services } from '../app-types.js'
import { RegmirrorError, isRegmirrorError, toWire } from '../errors.js'
import { handleBlob } from './handlers/blob.js'
import { handleCatalog } from './handlers/catalog.js'
import type { Req, RequestContext, Res } from './handlers/context.js'
import { handleManifest } from './handlers/manifest.js'
import { handleReferrers } from './handlers/referrers.js'
import { handlePing, handleSearch } from './handlers/search.js'
import { handleStatus } from './handlers/status.js'
import { handleTags } from './handlers/tags.js'
import { PEER_HEADER, verifyPeerRequest } from '../cluster/peer-auth.js'
import { PEER_PREFIX } from '../cluster/peers.js'
import { closeAfter, finish, sendError } from './respond.js'
import { route, type Route } from './router.js'
import type { Visible } from '../proxy/catalog-service.js'

// A random per-process prefix and a counter: unique across replicas' logs without drawing
// random bytes on every request.
const ID_PREFIX = randomBytes(4).toString('hex')
let requestCounter = 0
function nextRequestId(): string {
  requestCounter = (requestCounter + 1) % Number.MAX_SAFE_INTEGER
  return `${ID_PREFIX}-${requestCounter.toString(36)}`
}

/** One request, over HTTP/1.1 or HTTP/2 alike: route, dispatch, answer errors, log. */
export async function handle(req: Req, res: Res, s: Services): Promise<void> {
  const started = process.hrtime.bigint()
  const ctx: RequestContext = { req, res, id: nextRequestId(), bytes: 0 }
  res.setHeader('x-request-id', ctx.id)
  // No request body is ever read. One that was sent (a push, a GET with a body) is not drained
  // after the answer either: the connection closes, so a client cannot stream into it forever.
  const cl = req.headers['content-length']
  if ((cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined) closeAfter(res)
  let error: unknown
  res.once('close', () => logRequest(ctx, s, started, error))
  try {
    const r = route(req.method ?? 'GET', peerPath(ctx, s), req.headers.host, s.registries)
    if (r.kind === 'ui' || r.kind === 'status') return await handleStatus(ctx, r.kind, s)
    switch (r.kind) {
      case 'healthz':
      case 'readyz':
        ctx.kind = 'other'
        answerHealth(ctx, r.kind, s)
        return
      case 'metrics': {
        ctx.kind = 'other'
        const body = await s.metrics.exposition()
        res.writeHead(200, { 'content-type': s.metrics.registry.contentType })
        res.end(body)
        return
      }
      case 'base':
        ctx.kind = 'base'
        notWhileStarting(s)
        // `docker login` asks here: with authentication on, this is where credentials are checked.
        await s.access.identify(accessRequest(req))
        res.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0', 'content-length': 2 })
        finish(res, req.method === 'HEAD' ? undefined : '{}')
        return
      case 'ping':
      case 'search':
      case 'catalog':
        await handleListing(ctx, r, s)
        return
      case 'manifest':
      case 'blob':
      case 'tags':
      case 'referrers':
        ctx.kind = r.kind
        ctx.upstream = r.up.name
        ctx.repository = r.repo
        notWhileStarting(s)
        if (ctx.peer && r.kind !== 'blob') throw new RegmirrorError('NAME_UNKNOWN', 'not a registry API path')
        if (ctx.peer) await s.visibility.check(r.up, r.repo, (r as Extract<Route, { kind: 'blob' }>).digest, 'blob')
        else await admit(req, r, s)
        if (r.kind === 'manifest') await handleManifest(ctx, r, s)
        else if (r.kind === 'blob') await handleBlob(ctx, r, s)
        else if (r.kind === 'referrers') await handleReferrers(ctx, r, s)
        else await handleTags(ctx, r, s)
        return
    }
  } catch (err) {
    error = err
    if (ctx.kind === 'manifest' || ctx.kind === 'blob') ctx.cache = 'error'
    sendError(res, err)
  }
}

/**
 * The request's path, or for a peer request (cluster.peers) the registry path under the peer
 * prefix, once its signature is checked. Without a valid signature the peer prefix is not a
 * registry path at all: clients find nothing there.
 */
function peerPath(ctx: RequestContext, s: Services): string {
  const url = ctx.req.url ?? '/'
  if (!url.startsWith(`${PEER_PREFIX}/`)) return url
  const secret = s.config.cluster.secret
  const header = ctx.req.headers[PEER_HEADER]
  if (secret === undefined || !verifyPeerRequest(secret, url, Array.isArray(header) ? header[0] : header)) {
    throw new RegmirrorError('NAME_UNKNOWN', 'not a registry API path')
  }
  ctx.peer = true
  return url.slice(PEER_PREFIX.length)
}

/** `/healthz`: the process answers. `/readyz`: it should get traffic (not while starting or draining). */
function answerHealth(ctx: RequestContext, kind: 'healthz' | 'readyz', s: Services): void {
  const state = kind === 'healthz' ? 'ok' : s.status.draining ? 'draining' : s.status.ready ? 'ready' : 'starting'
  const ok = state === 'ok' || state === 'ready'
  ctx.res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
  ctx.res.end(JSON.stringify({ status: state }))
}

/** Registry requests while the index is still being rebuilt: come back shortly, rather than a cache that looks empty. */
function notWhileStarting(s: Services): void {
  if (!s.status.ready) {
    throw new RegmirrorError('UNAVAILABLE', 'the mirror is starting: its cache index is being rebuilt', { retryAfter: '5' })
  }
}

/**
 * The access layer, before any service: who is asking, whether they may pull from this repository,
 * and, for content by digest, whether this upstream and repository may see what the cache holds.
 */
async function admit(req: Req, r: Extract<Route, { kind: 'manifest' | 'blob' | 'tags' | 'referrers' }>, s: Services): Promise<void> {
  const who = await s.access.identify(accessRequest(req))
  s.access.authorize(who, r.up.name, r.repo)
  if (r.kind === 'blob') await s.visibility.check(r.up, r.repo, r.digest, 'blob')
  else if (r.kind === 'manifest' && r.ref.kind === 'digest') await s.visibility.check(r.up, r.repo, r.ref.digest, 'manifest')
}

/** `/v1/_ping`, `/v1/search` and `/v2/_catalog`: what the mirror holds or can find, not content. */
async function handleListing(ctx: RequestContext, r: Extract<Route, { kind: 'ping' | 'search' | 'catalog' }>, s: Services): Promise<void> {
  ctx.kind = r.kind === 'catalog' ? 'catalog' : 'search'
  if (ctx.peer) throw new RegmirrorError('NAME_UNKNOWN', 'not a registry API path')
  if (r.kind !== 'catalog' && !s.config.search.enabled) throw new RegmirrorError('NAME_UNKNOWN', 'search is not enabled on this mirror')
  if (r.kind === 'ping') return handlePing(ctx)
  notWhileStarting(s)
  const visible = await listingAccess(ctx.req, s)
  if (r.kind === 'search') await handleSearch(ctx, s, visible)
  else await handleCatalog(ctx, r, s, visible)
}

/**
 * Search and the catalog: the client must get in (credentials when authentication is on), and is
 * shown only the repositories its access rules let it pull.
 */
async function listingAccess(req: Req, s: Services): Promise<Visible> {
  const who = await s.access.identify(accessRequest(req))
  return (up, repo) => s.access.may(who, up.name, repo)
}

function accessRequest(req: Req): AccessRequest {
  const h = req.headers.authorization
  return { authorization: Array.isArray(h) ? h[0] : h, address: req.socket.remoteAddress ?? '' }
}

function logRequest(ctx: RequestContext, s: Services, started: bigint, error: unknown): void {
  const durationMs = Number(process.hrtime.bigint() - started) / 1e6
  const status = ctx.res.headersSent ? ctx.res.statusCode : 0
  const aborted = !(ctx.sent ?? ctx.res.writableFinished)
  if ((ctx.kind === 'manifest' || ctx.kind === 'blob') && ctx.cache) {
    const result = ctx.cache === 'joined' ? 'miss' : ctx.cache
    s.metrics.requests.inc({ kind: ctx.kind, result })
  }
  const fields = {
    reqId: ctx.id,
    method: ctx.req.method,
    path: ctx.req.url?.slice(0, 512),
    upstream: ctx.upstream,
    repository: ctx.repository,
    cache: ctx.cache,
    status,
    bytes: ctx.bytes,
    durationMs: Math.round(durationMs * 10) / 10,
    aborted: aborted || undefined,
    code: isRegmirrorError(error) ? error.code : error ? 'INTERNAL' : undefined,
    err: error && !(error instanceof RegmirrorError) ? error : undefined,
    cause: isRegmirrorError(error) && error.cause instanceof Error ? error.cause.message : undefined,
  }
  const wireStatus = error ? toWire(error).status : status
  if (wireStatus >= 500) s.log.error(fields, 'request')
  else s.log.info(fields, 'request')
}
