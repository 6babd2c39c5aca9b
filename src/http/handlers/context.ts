import type { IncomingMessage, ServerResponse } from 'node:http'

/** What one request did, for its log line. Handlers fill it in. */
export interface RequestContext {
  req: IncomingMessage
  res: ServerResponse
  id: string
  upstream?: string
  repository?: string
  kind?: 'manifest' | 'blob' | 'tags' | 'base' | 'other'
  cache?: 'hit' | 'miss' | 'stale' | 'error' | 'joined'
  bytes: number
}
