import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'

/** A request on either listener: HTTP/1.1 (plain or TLS) or HTTP/2 (its compatibility API). */
export type Req = IncomingMessage | Http2ServerRequest
export type Res = ServerResponse | Http2ServerResponse

/** What one request did, for its log line. Handlers fill it in. */
export interface RequestContext {
  req: Req
  res: Res
  id: string
  upstream?: string
  repository?: string
  kind?: 'manifest' | 'blob' | 'tags' | 'referrers' | 'search' | 'catalog' | 'base' | 'other'
  cache?: 'hit' | 'miss' | 'stale' | 'error' | 'joined'
  bytes: number
  /** A signed request from another replica (cluster.peers): served from here, never passed on. */
  peer?: boolean
  /** Set when the body went out by other means than the response stream (HTTP/2 respondWithFD). */
  sent?: boolean
}
