import { constants, type Http2ServerResponse } from 'node:http2'
import { pipeline } from 'node:stream/promises'
import type { Services } from '../../app-types.js'
import { RegmirrorError } from '../../errors.js'
import { parseRange } from '../range.js'
import type { Route } from '../router.js'
import { sendFile } from '../send-file.js'
import type { RequestContext } from './context.js'

export async function handleBlob(ctx: RequestContext, route: Extract<Route, { kind: 'blob' }>, s: Services): Promise<void> {
  const { up, repo, digest } = route
  const base: Record<string, string | number> = {
    'docker-content-digest': digest.value,
    'content-type': 'application/octet-stream',
    'accept-ranges': 'bytes',
    etag: `"${digest.value}"`,
    'cache-control': 'public, max-age=31536000, immutable',
    'docker-distribution-api-version': 'registry/2.0',
  }
  if (ctx.req.method === 'HEAD') {
    const { size, cache } = await s.blobs.head(up, repo, digest)
    ctx.cache = cache
    ctx.res.writeHead(200, { ...base, 'content-length': size, 'x-regmirror-cache': cache })
    ctx.res.end()
    return
  }
  const blob = await s.blobs.get(up, repo, digest, { local: ctx.peer === true })
  try {
    if (blob.redirect !== undefined) {
      answerRedirect(ctx, blob.redirect, digest.value)
      return
    }
    ctx.cache = blob.source === 'cache' ? 'hit' : blob.joined ? 'joined' : 'miss'
    base['x-regmirror-cache'] = ctx.cache === 'joined' ? 'miss' : ctx.cache
    if (blob.underBlobs !== undefined && answerAccel(ctx, base, blob.underBlobs, s)) return
    const size = blob.size
    const { status, start, end } = answerRange(ctx, base, size)
    if (blob.fd !== undefined && size !== undefined && size > 0 && 'stream' in ctx.res) {
      await sendFromFile(ctx, blob.fd, status, base, start, end - start + 1, s)
      return
    }
    ctx.res.writeHead(status, base)
    if (size === 0 || (size !== undefined && end < start)) {
      ctx.res.end()
      return
    }
    if (blob.fd !== undefined && size !== undefined && !('stream' in ctx.res)) {
      await sendFile(ctx.res, blob.fd, start, end - start + 1, (n) => {
        ctx.bytes += n
        s.metrics.servedBytes.inc({ source: 'cache' }, n)
      })
      return
    }
    const stream = blob.open(start, end)
    const source = blob.source === 'cache' ? 'cache' : 'upstream'
    stream.on('data', (c: Buffer) => {
      ctx.bytes += c.length
      s.metrics.servedBytes.inc({ source }, c.length)
    })
    await pipeline(stream, ctx.res)
  } finally {
    blob.release()
  }
}

/** storage.s3.redirect: the object in the bucket answers, Range included; it holds only verified content. */
function answerRedirect(ctx: RequestContext, url: string, digest: string): void {
  ctx.cache = 'miss'
  ctx.res.writeHead(307, {
    location: url,
    'docker-content-digest': digest,
    'docker-distribution-api-version': 'registry/2.0',
    'content-length': 0,
    'x-regmirror-cache': 'redirect',
  })
  ctx.res.end()
}

/**
 * `server.accelRedirect`: a hit asked through nginx (it set the header) is answered with its headers and
 * X-Accel-Redirect, no body; nginx sends the file and applies Range itself. False when this request gets the body.
 */
function answerAccel(ctx: RequestContext, base: Record<string, string | number>, underBlobs: string, s: Services): boolean {
  const { prefix, header: marker } = s.config.server.accelRedirect
  if (prefix === undefined || !header(ctx.req.headers[marker])) return false
  // Accept-Ranges is nginx's to say (it would be sent twice).
  const { 'accept-ranges': _, ...headers } = base
  ctx.res.writeHead(200, { ...headers, 'content-length': 0, 'x-accel-redirect': prefix + underBlobs })
  ctx.res.end()
  s.metrics.accelRedirects.inc()
  return true
}

/**
 * A cache hit over HTTP/2: the kernel sends the file's bytes from the descriptor (no copy through
 * JavaScript), the Range as an offset and a length. The response's own headers are bypassed, so
 * the request id is sent here too.
 */
async function sendFromFile(
  ctx: RequestContext,
  fd: number,
  status: number,
  headers: Record<string, string | number>,
  offset: number,
  length: number,
  s: Services,
): Promise<void> {
  const stream = (ctx.res as Http2ServerResponse).stream
  ctx.res.statusCode = status
  await new Promise<void>((resolve) => {
    stream.once('close', resolve)
    stream.respondWithFD(fd, { ...headers, ':status': status, 'x-request-id': ctx.id }, { offset, length })
  })
  if (stream.rstCode !== constants.NGHTTP2_NO_ERROR) return
  ctx.sent = true
  ctx.bytes = length
  s.metrics.servedBytes.inc({ source: 'cache' }, length)
}

/** Status and byte span for this request's Range (and If-Range); sets content-range and content-length in `base`. */
function answerRange(
  ctx: RequestContext,
  base: Record<string, string | number>,
  size: number | undefined,
): { status: number; start: number; end: number } {
  if (size === undefined) return { status: 200, start: 0, end: Number.MAX_SAFE_INTEGER }
  // RFC 9110 §13.1.5: a Range with an If-Range that does not name this content's (strong)
  // entity tag, or names a date (there is no Last-Modified to match), gets the whole body.
  const ifRange = header(ctx.req.headers['if-range'])
  const range = ifRange === undefined || ifRange === base.etag ? parseRange(header(ctx.req.headers.range), size) : { kind: 'none' as const }
  if (range.kind === 'unsatisfiable') {
    throw new RegmirrorError('RANGE_NOT_SATISFIABLE', 'requested range not satisfiable', { detail: { size } })
  }
  if (range.kind !== 'range') {
    base['content-length'] = size
    return { status: 200, start: 0, end: size - 1 }
  }
  base['content-range'] = `bytes ${range.start}-${range.end}/${size}`
  base['content-length'] = range.end - range.start + 1
  return { status: 206, start: range.start, end: range.end }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v
}
