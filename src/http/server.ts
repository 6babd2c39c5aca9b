import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Http2SecureServer, Http2Session } from 'node:http2'
import type { Duplex } from 'node:stream'
import type { Services } from '../app-types.js'
import { RegmirrorError, toWire } from '../errors.js'
import { handle } from './handle.js'
import type { Req, Res } from './handlers/context.js'
import { CertificateWatcher, createTlsServer, loadPair } from './tls.js'

/** The listeners: plain HTTP/1.1 always, TLS (HTTP/2 and HTTP/1.1) with a certificate. One handler serves both. */
export interface Listeners {
  plain: Server
  tls?: { server: Http2SecureServer; sessions: Set<Http2Session>; sockets: Set<Duplex>; certs: CertificateWatcher }
  /** Requests being answered now, on either listener. */
  inFlight(): number
}

export function createListeners(s: Services): Listeners {
  let inFlight = 0
  const serve = (req: Req, res: Res) => {
    inFlight++
    void handle(req, res, s).finally(() => inFlight--)
  }
  const plain = createServer({ maxHeaderSize: s.config.server.maxHeaderSize }, (req, res) => {
    // Shutting down: a keep-alive connection must not carry more requests after this one,
    // or a busy client could keep a stopping server busy until the deadline.
    if (!plain.listening) res.shouldKeepAlive = false
    serve(req, res)
  })
  guard(plain, s)
  const { cert, key } = s.config.server.tls
  if (cert === undefined || key === undefined) return { plain, inFlight: () => inFlight }
  // A pair that does not load stops the start, with the reason.
  const { server, sessions } = createTlsServer(
    {
      pair: loadPair(cert, key),
      maxConcurrentStreams: s.config.server.http2.maxConcurrentStreams,
      maxHeaderSize: s.config.server.maxHeaderSize,
    },
    serve,
  )
  guard(server, s)
  // HTTP/1.1 over TLS has no session to close: its sockets are kept for the shutdown.
  const sockets = new Set<Duplex>()
  server.on('secureConnection', (socket: Duplex) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  const certs = new CertificateWatcher(cert, key, (pair) => server.setSecureContext({ ...pair, minVersion: 'TLSv1.2' }), s.log)
  return { plain, tls: { server, sessions, sockets, certs }, inFlight: () => inFlight }
}

/**
 * What both listeners share: the timeouts and header limits (HTTP/1.1 over TLS reads them from the
 * server's properties, as the plain server does), CONNECT and malformed requests answered.
 */
function guard(server: Server | Http2SecureServer, s: Services): void {
  const cfg = s.config.server
  const props = server as unknown as Record<string, number>
  props.headersTimeout = cfg.headersTimeout
  props.requestTimeout = cfg.requestTimeout
  props.keepAliveTimeout = cfg.keepAliveTimeout
  props.maxHeaderSize = cfg.maxHeaderSize
  // Node only enforces the header and request timeouts when it checks, every 30 s by
  // default: far too coarse to shed a flood of stuck clients with a short headersTimeout.
  props.connectionsCheckingInterval = checkingInterval(cfg.headersTimeout, cfg.requestTimeout)
  // Inactivity in both directions: a client that stopped reading, a half-open socket, an idle
  // HTTP/2 session. Without a 'timeout' listener Node destroys the socket, which is what we want.
  server.setTimeout(cfg.idleTimeout)
  // Node hands CONNECT to this event and silently drops the socket when nobody listens:
  // answer it like any other method a read-only registry does not support.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    const { status, body } = toWire(new RegmirrorError('UNSUPPORTED', 'CONNECT is not supported: this is a registry, not a proxy'))
    socket.end(
      `HTTP/1.1 ${status} Method Not Allowed\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    )
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Malformed requests, oversized headers and header timeouts end here; answer if we still can.
    if (socket.writable && !socket.writableEnded) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
      const text = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'
      socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
    } else socket.destroy()
  })
}

function checkingInterval(...limits: number[]): number {
  const set = limits.filter((l) => l > 0)
  return set.length === 0 ? 30_000 : Math.max(10, Math.min(1000, Math.floor(Math.min(...set) / 4)))
}
