// The "CDN" that blob GETs on the registry redirect to, as Docker Hub's do: it serves a blob only under a URL the
// registry signed for that digest, and answers anything else the way an object store does.
import type http from 'node:http'
import { randomBytes } from 'node:crypto'
import type { Content } from './content.js'
import { serveBytes, textReply, type Reply } from './reply.js'
import type { ServerUrls } from './server.js'

export class Cdn {
  /** signature -> digest */
  private readonly sigs = new Map<string, string>()

  constructor(
    private readonly content: Content,
    private readonly urls: ServerUrls,
  ) {}

  /** a fresh URL on the CDN for this blob */
  signedUrl(digest: string): string {
    const sig = randomBytes(16).toString('hex')
    this.sigs.set(sig, digest)
    const hex = digest.slice(digest.indexOf(':') + 1)
    return `${this.urls.cdn}/blobs/${hex}?sig=${sig}`
  }

  route(req: http.IncomingMessage, u: URL): Reply {
    const method = req.method ?? 'GET'
    if (method !== 'GET' && method !== 'HEAD') return textReply(405, 'method not allowed\n')
    const m = /^\/blobs\/([A-Za-z0-9=_-]+)$/.exec(u.pathname)
    if (!m) return textReply(404, 'not found\n')
    const digest = this.sigs.get(u.searchParams.get('sig') ?? '')
    if (!digest || digest.slice(digest.indexOf(':') + 1) !== m[1]) {
      return {
        status: 403,
        headers: { 'content-type': 'application/xml' },
        body: Buffer.from('<Error><Code>SignatureDoesNotMatch</Code></Error>'),
      }
    }
    const bytes = this.content.blob(digest)
    if (!bytes) return textReply(404, 'not found\n')
    return serveBytes(bytes, req.headers.range, { etag: `"${m[1]}"` })
  }
}
