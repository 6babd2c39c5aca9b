import type { Duplex } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Services } from '../app-types.js'
import { RegmirrorError, isRegmirrorError, toWire } from '../errors.js'
import { handleBlob } from './handlers/blob.js'
import type { RequestContext } from './handlers/context.js'
import { handleManifest } from './handlers/manifest.js'
import { handleTags } from './handlers/tags.js'
import { sendError } from './respond.js'
import { route } from './router.js'

export function createHttpServer(s: Services): Server {
  const cfg = s.config.server
  const server = createServer(
    {
      maxHeaderSize: cfg.maxHeaderSize,
      headersTimeout: cfg.headersTimeout,
      requestTimeout: cfg.requestTimeout,
      keepAliveTimeout: cfg.keepAliveTimeout,
      // Node only enforces the header and request timeouts when it checks, every 30 s by
      // default: far too coarse to shed a flood of stuck clients with a short headersTimeout.
      connectionsCheckingInterval: checkingInterval(cfg.headersTimeout, cfg.requestTimeout),
    },
    (req, res) => {
      // Shutting down: a keep-alive connection must not carry more requests after this one,
      // or a busy client could keep a stopping server busy until the deadline.
      if (!server.listening) res.shouldKeepAlive = false
      void handle(req, res, s)
    },
  )
  // Inactivity in both directions: a client that stopped reading or a half-open socket.
  // Without a 'timeout' listener Node destroys the socket, which is what we want.
  server.timeout = cfg.idleTimeout
  // Node hands CONNECT to this event and silently drops the socket when nobody listens:
  // answer it like any other method a read-only registry does not support.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    const { status, body } = toWire(new RegmirrorError('UNSUPPORTED', 'CONNECT is not supported: this is a registry, not a proxy'))
    socket.end(
      `HTTP/1.1 ${status} Method Not Allowed\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    )
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Malformed requests, oversized headers and header timeouts end here; answer if we still can.
    if (socket.writable && !socket.writableEnded) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
      socket.end(
        `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
      )
    } else socket.destroy()
  })
  return server
}

function checkingInterval(...limits: number[]): number {
  const set = limits.filter((l) => l > 0)
  return set.length === 0 ? 30_000 : Math.max(10, Math.min(1000, Math.floor(Math.min(...set) / 4)))
}

// A random per-process prefix and a counter: unique across replicas' logs without drawing
// random bytes on every request.
const ID_PREFIX = randomBytes(4).toString('hex')
let requestCounter = 0
function nextRequestId(): string {
  requestCounter = (requestCounter + 1) % Number.MAX_SAFE_INTEGER
  return `${ID_PREFIX}-${requestCounter.toString(36)}`
}

async function handle(req: IncomingMessage, res: ServerResponse, s: Services): Promise<void> {
  const started = process.hrtime.bigint()
  const ctx: RequestContext = { req, res, id: nextRequestId(), bytes: 0 }
  res.setHeader('x-request-id', ctx.id)
  // No request body is ever read. One that was sent (a push, a GET with a body) is not drained
  // after the answer either: the connection closes, so a client cannot stream into it forever.
  const cl = req.headers['content-length']
  if ((cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false
  let error: unknown
  res.once('close', () => logRequest(ctx, s, started, error))
  try {
    const r = route(req.method ?? 'GET', req.url ?? '/', req.headers.host, s.registries)
    switch (r.kind) {
      case 'healthz':
        ctx.kind = 'other'
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{"status":"ok"}')
        return
      case 'metrics': {
        ctx.kind = 'other'
        const body = await s.metrics.registry.metrics()
        res.writeHead(200, { 'content-type': s.metrics.registry.contentType })
        res.end(body)
        return
      }
      case 'base':
        ctx.kind = 'base'
        res.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0', 'content-length': 2 })
        res.end(req.method === 'HEAD' ? undefined : '{}')
        return
      case 'manifest':
      case 'blob':
      case 'tags':
        ctx.kind = r.kind
        ctx.upstream = r.up.name
        ctx.repository = r.repo
        if (r.kind === 'manifest') await handleManifest(ctx, r, s)
        else if (r.kind === 'blob') await handleBlob(ctx, r, s)
        else await handleTags(ctx, r, s)
        return
    }
  } catch (err) {
    error = err
    if (ctx.kind === 'manifest' || ctx.kind === 'blob') ctx.cache = 'error'
    sendError(res, err)
  }
}

function logRequest(ctx: RequestContext, s: Services, started: bigint, error: unknown): void {
  const durationMs = Number(process.hrtime.bigint() - started) / 1e6
  const status = ctx.res.headersSent ? ctx.res.statusCode : 0
  const aborted = !ctx.res.writableFinished
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
