// A fake Docker-Hub-like registry for integration tests: three real HTTP servers on 127.0.0.1 port 0
// (the registry, a token realm "auth" server, and a "CDN" that blob GETs redirect to), all content in memory,
// every request recorded, and fault switches (status, slow, stall, drop, truncate, extra, wrongBytes, redirects, delays).
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { buildImage, sha256, type FakeImage, type ImageOptions } from './oci-fixtures.js'

export { sha256, buildImage, MediaTypes } from './oci-fixtures.js'
export type { FakeImage, FakeBlob, FakeManifest, ImageOptions, Platform } from './oci-fixtures.js'

export type ServerName = 'registry' | 'auth' | 'cdn'

export interface FakeRegistryOptions {
  /** default 'bearer': Docker Hub style token auth */
  auth?: 'none' | 'bearer'
  /** if set, the token endpoint requires HTTP Basic with these for any token; else tokens are anonymous */
  credentials?: { username: string; password: string }
  /** expires_in in token responses (default 300) */
  tokenTtlSeconds?: number
  /** default true: blob GET on the registry -> 307 to the CDN server with a signed query string */
  redirectBlobs?: boolean
  /** Docker Hub style ratelimit-* headers on manifest responses; each manifest GET served with 200 decrements
   *  remaining (HEADs don't); a manifest GET with remaining 0 gets 429 TOOMANYREQUESTS. */
  rateLimit?: { limit: number; remaining: number }
  /** advertise this token realm in challenges instead of the fake's own auth server (hostile-upstream tests) */
  realm?: string
  /** address the three servers listen on (default 127.0.0.1) */
  host?: string
}

export interface RecordedRequest {
  server: ServerName
  method: string
  /** with query */
  path: string
  headers: Record<string, string | string[] | undefined>
  /** status sent (0 while not answered yet, e.g. during delayHeaders) */
  status: number
}

/**
 * Which requests a fault or a count applies to. All given fields must match.
 * `path`: a string matches the path with its query or the path without it, exactly; a RegExp is tested
 * against the path with its query. `method` is compared case-insensitively.
 */
export interface RequestMatch {
  server?: ServerName
  method?: string
  path?: string | RegExp
}

interface FaultCommon {
  match?: RequestMatch
  /** apply to the first N matching requests only, then disarm (default unlimited) */
  times?: number
}

/**
 * Faults apply in the order added; the first armed fault that matches *and applies* wins.
 * `status`, `redirect`, `redirectLoop`, `delayHeaders` apply to any matching request.
 * Body faults (`slow`, `stall`, `drop`, `truncate`, `extra`, `wrongBytes`) apply only to GET responses with
 * status 200/206 and a non-empty body (so a 401, a 307 or a HEAD doesn't use up `times`); their byte offsets
 * count from the start of that response's body (a Range response's body included).
 */
export type Fault = FaultCommon &
  (
    | { kind: 'status'; status: number; retryAfter?: string }
    | { kind: 'slow'; bytesPerSecond: number }
    | { kind: 'stall'; afterBytes: number }
    | { kind: 'drop'; afterBytes: number }
    | { kind: 'truncate'; afterBytes: number }
    | { kind: 'extra'; bytes: number }
    | { kind: 'wrongBytes' }
    | { kind: 'redirectLoop' }
    | { kind: 'redirect'; location: string }
    | { kind: 'delayHeaders'; ms: number }
    /** answers this instead (any request; Content-Length is the body's unless `chunked`) */
    | { kind: 'reply'; status: number; headers?: Record<string, string>; body?: Buffer | string; chunked?: boolean }
    /** the normal answer with one header replaced (or removed, with null) */
    | { kind: 'header'; name: string; value: string | null }
    /** a 200 of random bytes without end and without a Content-Length (any request) */
    | { kind: 'endless' }
  )

export interface FakeRegistry {
  url: string
  authUrl: string
  cdnUrl: string
  /** the `service` the challenge names */
  readonly service: string
  addBlob(bytes: Buffer): string
  addManifest(repo: string, body: Buffer, mediaType: string, tag?: string): string
  setTag(repo: string, tag: string, digest: string): void
  deleteTag(repo: string, tag: string): void
  /** removes a blob (e.g. to prove a later pull is served from the cache) */
  deleteBlob(digest: string): void
  addImage(repo: string, tag: string, opts?: ImageOptions): FakeImage
  requests: RecordedRequest[]
  count(filter: RequestMatch): number
  /** clears requests (not content, faults or tokens) */
  reset(): void
  fault(f: Fault): void
  clearFaults(): void
  /** makes every token issued so far invalid (registry answers 401 again) */
  expireTokens(): void
  /** current remaining count when rateLimit is set */
  readonly rateLimitRemaining: number | undefined
  close(): Promise<void>
}

const SERVICE = 'fake-registry'
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const TAG_RE = /^[\w][\w.-]{0,127}$/

interface Reply {
  status: number
  headers: Record<string, string>
  /** for HEAD the body is not sent but its length is the Content-Length */
  body: Buffer
}

interface Armed {
  f: Fault
  left: number
}

interface Token {
  repos: Set<string>
  expiresAt: number
}

interface Repo {
  manifests: Map<string, { body: Buffer; mediaType: string }>
  tags: Map<string, string>
}

const BODY_FAULTS = new Set(['slow', 'stall', 'drop', 'truncate', 'extra', 'wrongBytes'])

function ociError(status: number, code: string, message: string, detail?: unknown, headers: Record<string, string> = {}): Reply {
  const body = Buffer.from(JSON.stringify({ errors: [{ code, message, detail: detail ?? null }] }))
  return { status, headers: { 'content-type': 'application/json', ...headers }, body }
}

function jsonReply(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: Buffer.from(JSON.stringify(value)) }
}

function textReply(status: number, text: string, headers: Record<string, string> = {}): Reply {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers }, body: Buffer.from(text) }
}

/** Parses a single `bytes=` range. undefined: ignore (serve the whole body); 'unsatisfiable': 416. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m) return undefined
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return undefined
  if (a === '') {
    const n = Number(b)
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(a)
  if (start >= size) return 'unsatisfiable'
  let end = b === '' ? size - 1 : Number(b)
  if (end < start) return undefined
  if (end >= size) end = size - 1
  return { start, end }
}

function serveBytes(bytes: Buffer, range: string | undefined, headers: Record<string, string>): Reply {
  const base = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', ...headers }
  const r = parseRange(range, bytes.length)
  if (r === 'unsatisfiable') {
    return { status: 416, headers: { ...base, 'content-range': `bytes */${bytes.length}` }, body: Buffer.alloc(0) }
  }
  if (r) {
    return {
      status: 206,
      headers: { ...base, 'content-range': `bytes ${r.start}-${r.end}/${bytes.length}` },
      body: bytes.subarray(r.start, r.end + 1),
    }
  }
  return { status: 200, headers: base, body: bytes }
}

function acceptable(accept: string | undefined, mediaType: string): boolean {
  if (!accept) return true
  const types = accept
    .split(',')
    .map((s) => (s.split(';')[0] ?? '').trim().toLowerCase())
    .filter((s) => s !== '')
  if (types.length === 0) return true
  return types.includes('*/*') || types.includes(mediaType.toLowerCase())
}

function matches(m: RequestMatch | undefined, server: ServerName, method: string, path: string): boolean {
  if (!m) return true
  if (m.server !== undefined && m.server !== server) return false
  if (m.method !== undefined && m.method.toUpperCase() !== method.toUpperCase()) return false
  if (m.path !== undefined) {
    if (typeof m.path === 'string') {
      const q = path.indexOf('?')
      const bare = q === -1 ? path : path.slice(0, q)
      if (m.path !== path && m.path !== bare) return false
    } else {
      m.path.lastIndex = 0
      if (!m.path.test(path)) return false
    }
  }
  return true
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function listen(server: http.Server, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => {
      server.off('error', reject)
      const h = host.includes(':') ? `[${host}]` : host
      resolve(`http://${h}:${(server.address() as AddressInfo).port}`)
    })
  })
}

export async function startFakeRegistry(opts: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  const authMode = opts.auth ?? 'bearer'
  const ttl = opts.tokenTtlSeconds ?? 300
  const redirectBlobs = opts.redirectBlobs ?? true
  const rate = opts.rateLimit ? { ...opts.rateLimit } : undefined

  const blobs = new Map<string, Buffer>()
  const repos = new Map<string, Repo>()
  const tokens = new Map<string, Token>()
  const sigs = new Map<string, string>() // CDN signature -> digest
  const requests: RecordedRequest[] = []
  let faults: Armed[] = []
  const timers = new Set<NodeJS.Timeout>()
  const sockets = new Set<Socket>()
  let closed = false
  const urls: Record<ServerName, string> = { registry: '', auth: '', cdn: '' }

  function later(ms: number, fn: () => void): void {
    if (closed) return
    const t = setTimeout(() => {
      timers.delete(t)
      if (!closed) fn()
    }, ms)
    timers.add(t)
  }

  function repo(name: string): Repo {
    let r = repos.get(name)
    if (!r) {
      r = { manifests: new Map(), tags: new Map() }
      repos.set(name, r)
    }
    return r
  }

  // ---------- auth ----------

  /** undefined when allowed; else the 401 reply. `name` undefined for the /v2/ base endpoint. */
  function checkAuth(req: http.IncomingMessage, name: string | undefined): Reply | undefined {
    if (authMode === 'none') return undefined
    const h = req.headers.authorization
    const m = h ? /^Bearer\s+(\S+)$/i.exec(h) : null
    const tok = m?.[1] ? tokens.get(m[1]) : undefined
    if (tok && tok.expiresAt > Date.now() && (name === undefined || tok.repos.has(name))) return undefined
    let challenge = `Bearer realm="${opts.realm ?? `${urls.auth}/token`}",service="${SERVICE}"`
    if (name !== undefined) challenge += `,scope="repository:${name}:pull"`
    if (h) challenge += tok && tok.expiresAt > Date.now() ? ',error="insufficient_scope"' : ',error="invalid_token"'
    const detail = name === undefined ? null : [{ Type: 'repository', Class: '', Name: name, Action: 'pull' }]
    return ociError(401, 'UNAUTHORIZED', 'authentication required', detail, { 'www-authenticate': challenge })
  }

  async function authRoute(req: http.IncomingMessage, u: URL): Promise<Reply> {
    const method = req.method ?? 'GET'
    if (u.pathname !== '/token') return textReply(404, '404 page not found\n')
    let params = u.searchParams
    let user: string | undefined
    let pass: string | undefined
    if (method === 'POST') {
      // OAuth2 password grant, as containerd sends it
      params = new URLSearchParams((await readBody(req)).toString('utf8'))
      if (params.get('grant_type') === 'password') {
        user = params.get('username') ?? undefined
        pass = params.get('password') ?? undefined
      }
    } else if (method !== 'GET') {
      return textReply(405, 'method not allowed\n')
    }
    const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '')
    if (basic?.[1]) {
      const decoded = Buffer.from(basic[1], 'base64').toString('utf8')
      const i = decoded.indexOf(':')
      user = i === -1 ? decoded : decoded.slice(0, i)
      pass = i === -1 ? '' : decoded.slice(i + 1)
    }
    const service = params.get('service')
    if (service !== null && service !== SERVICE) {
      return jsonReply(400, { details: `unknown service ${service}` })
    }
    if (opts.credentials && (user !== opts.credentials.username || pass !== opts.credentials.password)) {
      return jsonReply(401, { details: 'incorrect username or password' }, { 'www-authenticate': `Basic realm="${SERVICE}"` })
    }
    const granted = new Set<string>()
    for (const s of params.getAll('scope').flatMap((x) => x.split(' '))) {
      const first = s.indexOf(':')
      const last = s.lastIndexOf(':')
      if (first === -1 || last === first) continue
      if (s.slice(0, first) !== 'repository') continue
      const actions = s.slice(last + 1).split(',')
      if (actions.includes('pull') || actions.includes('*')) granted.add(s.slice(first + 1, last))
    }
    const token = randomBytes(24).toString('base64url')
    tokens.set(token, { repos: granted, expiresAt: Date.now() + ttl * 1000 })
    return jsonReply(200, { token, access_token: token, expires_in: ttl, issued_at: new Date().toISOString() })
  }

  // ---------- registry ----------

  function registryRoute(req: http.IncomingMessage, u: URL): Reply {
    const method = req.method ?? 'GET'
    const p = u.pathname
    if (p === '/v2/' || p === '/v2') {
      if (method !== 'GET' && method !== 'HEAD') return ociError(405, 'UNSUPPORTED', 'method not allowed')
      return checkAuth(req, undefined) ?? jsonReply(200, {})
    }
    if (!p.startsWith('/v2/')) return textReply(404, '404 page not found\n')
    const rest = p.slice(4)
    let m: RegExpExecArray | null
    let kind: 'manifest' | 'blob' | 'tags'
    if ((m = /^(.+)\/manifests\/([^/]+)$/.exec(rest))) kind = 'manifest'
    else if ((m = /^(.+)\/blobs\/([^/]+)$/.exec(rest))) kind = 'blob'
    else if ((m = /^(.+)\/tags\/list$/.exec(rest))) kind = 'tags'
    else return textReply(404, '404 page not found\n')
    const name = m[1]!
    if (!NAME_RE.test(name)) return ociError(400, 'NAME_INVALID', 'invalid repository name', { name })
    if (method !== 'GET' && method !== 'HEAD') return ociError(405, 'UNSUPPORTED', 'the operation is unsupported')
    const denied = checkAuth(req, name)
    if (denied) return denied
    const ref = m[2] === undefined ? '' : decodeURIComponent(m[2])

    if (kind === 'tags') {
      const r = repos.get(name)
      if (!r) return ociError(404, 'NAME_UNKNOWN', 'repository name not known to registry', { name })
      let tags = [...r.tags.keys()].sort()
      const last = u.searchParams.get('last')
      if (last !== null) tags = tags.filter((t) => t > last)
      const nParam = u.searchParams.get('n')
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

    if (kind === 'manifest') {
      const rl: Record<string, string> = {}
      const setRl = () => {
        if (rate) {
          rl['ratelimit-limit'] = `${rate.limit};w=21600`
          rl['ratelimit-remaining'] = `${rate.remaining};w=21600`
        }
      }
      const isDigest = ref.includes(':')
      if (isDigest ? !DIGEST_RE.test(ref) : !TAG_RE.test(ref)) {
        setRl()
        return isDigest
          ? ociError(400, 'DIGEST_INVALID', 'provided digest did not match uploaded content', { digest: ref }, rl)
          : ociError(400, 'TAG_INVALID', 'manifest tag did not match URI', { tag: ref }, rl)
      }
      if (rate && method === 'GET' && rate.remaining <= 0) {
        setRl()
        return ociError(429, 'TOOMANYREQUESTS', 'You have reached your pull rate limit.', null, rl)
      }
      const r = repos.get(name)
      const digest = isDigest ? ref : r?.tags.get(ref)
      const man = digest ? r?.manifests.get(digest) : undefined
      if (!digest || !man || !acceptable(req.headers.accept, man.mediaType)) {
        setRl()
        return ociError(404, 'MANIFEST_UNKNOWN', 'manifest unknown', { name, reference: ref }, rl)
      }
      if (rate && method === 'GET') rate.remaining--
      setRl()
      return {
        status: 200,
        headers: {
          'content-type': man.mediaType,
          'docker-content-digest': digest,
          etag: `"${digest}"`,
          ...rl,
        },
        body: man.body,
      }
    }

    // blob
    if (!DIGEST_RE.test(ref)) return ociError(400, 'DIGEST_INVALID', 'invalid digest', { digest: ref })
    const bytes = blobs.get(ref)
    if (!bytes) return ociError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest: ref })
    if (method === 'HEAD') {
      return {
        status: 200,
        headers: { 'content-type': 'application/octet-stream', 'docker-content-digest': ref, 'accept-ranges': 'bytes' },
        body: bytes,
      }
    }
    if (redirectBlobs) {
      const sig = randomBytes(16).toString('hex')
      sigs.set(sig, ref)
      const hex = ref.slice(ref.indexOf(':') + 1)
      return { status: 307, headers: { location: `${urls.cdn}/blobs/${hex}?sig=${sig}` }, body: Buffer.alloc(0) }
    }
    return serveBytes(bytes, req.headers.range, { 'docker-content-digest': ref, etag: `"${ref}"` })
  }

  // ---------- CDN ----------

  function cdnRoute(req: http.IncomingMessage, u: URL): Reply {
    const method = req.method ?? 'GET'
    if (method !== 'GET' && method !== 'HEAD') return textReply(405, 'method not allowed\n')
    const m = /^\/blobs\/([A-Za-z0-9=_-]+)$/.exec(u.pathname)
    if (!m) return textReply(404, 'not found\n')
    const digest = sigs.get(u.searchParams.get('sig') ?? '')
    if (!digest || digest.slice(digest.indexOf(':') + 1) !== m[1]) {
      return {
        status: 403,
        headers: { 'content-type': 'application/xml' },
        body: Buffer.from('<Error><Code>SignatureDoesNotMatch</Code></Error>'),
      }
    }
    const bytes = blobs.get(digest)
    if (!bytes) return textReply(404, 'not found\n')
    return serveBytes(bytes, req.headers.range, { etag: `"${m[1]}"` })
  }

  // ---------- plumbing: recording, faults, sending ----------

  const routes: Record<ServerName, (req: http.IncomingMessage, u: URL) => Reply | Promise<Reply>> = {
    registry: registryRoute,
    auth: authRoute,
    cdn: cdnRoute,
  }

  function take(a: Armed): Fault {
    if (Number.isFinite(a.left)) {
      a.left--
      if (a.left <= 0) faults = faults.filter((x) => x !== a)
    }
    return a.f
  }

  async function handle(server: ServerName, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET'
    const path = req.url ?? '/'
    const rec: RecordedRequest = { server, method, path, headers: { ...req.headers }, status: 0 }
    requests.push(rec)
    const u = new URL(path, urls[server])
    if (!(server === 'auth' && method === 'POST')) req.resume()

    let reply: Reply | undefined
    const compute = async (): Promise<Reply> => (reply ??= await routes[server](req, u))
    let chosen: Fault | undefined
    for (const a of [...faults]) {
      if (!matches(a.f.match, server, method, path)) continue
      if (BODY_FAULTS.has(a.f.kind)) {
        const r = await compute()
        if (method !== 'GET' || (r.status !== 200 && r.status !== 206) || r.body.length === 0) continue
      }
      chosen = take(a)
      break
    }

    if (chosen?.kind === 'delayHeaders') {
      const ms = chosen.ms
      await new Promise<void>((resolve) => later(ms, resolve))
      chosen = undefined
    }
    if (chosen?.kind === 'status') {
      const code = chosen.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE'
      const extra: Record<string, string> = chosen.retryAfter !== undefined ? { 'retry-after': chosen.retryAfter } : {}
      reply = ociError(chosen.status, code, `fault: status ${chosen.status}`, null, extra)
      chosen = undefined
    } else if (chosen?.kind === 'redirectLoop') {
      reply = { status: 307, headers: { location: `${urls[server]}${path}` }, body: Buffer.alloc(0) }
      chosen = undefined
    } else if (chosen?.kind === 'redirect') {
      reply = { status: 307, headers: { location: chosen.location }, body: Buffer.alloc(0) }
      chosen = undefined
    } else if (chosen?.kind === 'reply') {
      const body = typeof chosen.body === 'string' ? Buffer.from(chosen.body) : (chosen.body ?? Buffer.alloc(0))
      reply = { status: chosen.status, headers: { ...chosen.headers }, body }
      if (!chosen.chunked) chosen = undefined
    } else if (chosen?.kind === 'endless') {
      reply = { status: 200, headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(0) }
    } else if (chosen?.kind === 'header') {
      const r = await compute()
      const headers = { ...r.headers }
      if (chosen.value === null) delete headers[chosen.name.toLowerCase()]
      else headers[chosen.name.toLowerCase()] = chosen.value
      reply = { ...r, headers }
    }
    const r = await compute()
    send(server, req, res, rec, r, chosen)
  }

  function send(
    server: ServerName,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    rec: RecordedRequest,
    reply: Reply,
    fault: Fault | undefined,
  ): void {
    if (closed || res.destroyed) return
    let body = reply.body
    const headers: Record<string, string> = { ...reply.headers }
    if (server === 'registry') headers['docker-distribution-api-version'] = 'registry/2.0'
    if (fault?.kind === 'truncate') body = body.subarray(0, Math.max(0, fault.afterBytes))
    else if (fault?.kind === 'extra') body = Buffer.concat([body, randomBytes(fault.bytes)])
    else if (fault?.kind === 'wrongBytes') {
      body = Buffer.from(body)
      for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ 0xff
    }
    const unsized = fault?.kind === 'endless' || (fault?.kind === 'reply' && fault.chunked === true)
    // A 'header' fault may have set its own (lying) Content-Length: it stands.
    if (!unsized && !(fault?.kind === 'header' && headers['content-length'] !== undefined)) headers['content-length'] = String(body.length)
    rec.status = reply.status
    res.writeHead(reply.status, headers)
    if (fault?.kind === 'endless' && req.method !== 'HEAD') {
      const chunk = randomBytes(64 * 1024)
      // One write per turn of the event loop, and a pause whenever the socket is full.
      const pump = (): void => {
        if (closed || res.destroyed) return
        if (res.write(chunk)) setImmediate(pump)
        else res.once('drain', pump)
      }
      pump()
      return
    }
    if (req.method === 'HEAD' || body.length === 0) {
      res.end()
      return
    }
    if (fault?.kind === 'slow') {
      const chunk = Math.max(1, Math.ceil(fault.bytesPerSecond / 20))
      let off = 0
      const tick = (): void => {
        if (res.destroyed) return
        const next = body.subarray(off, off + chunk)
        off += next.length
        if (off >= body.length) res.end(next)
        else {
          res.write(next)
          later(50, tick)
        }
      }
      res.flushHeaders()
      later(50, tick)
      return
    }
    if (fault?.kind === 'stall' || fault?.kind === 'drop') {
      const part = body.subarray(0, Math.max(0, fault.afterBytes))
      const socket = res.socket
      if (fault.kind === 'stall') {
        if (part.length > 0) res.write(part)
        else res.flushHeaders()
        return // never ends; close() destroys the socket
      }
      if (part.length > 0) res.write(part, () => socket?.destroy())
      else {
        res.flushHeaders()
        socket?.end() // FIN after the headers are flushed
      }
      return
    }
    res.end(body)
  }

  function makeServer(name: ServerName): http.Server {
    const server = http.createServer((req, res) => {
      handle(name, req, res).catch((err: unknown) => {
        if (res.headersSent || closed) {
          res.destroy()
          return
        }
        const r = ociError(500, 'UNKNOWN', `fake registry error: ${String(err)}`)
        res.writeHead(500, { ...r.headers, 'content-length': String(r.body.length) })
        res.end(r.body)
      })
    })
    server.on('connection', (s: Socket) => {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    })
    return server
  }

  const servers: Record<ServerName, http.Server> = {
    registry: makeServer('registry'),
    auth: makeServer('auth'),
    cdn: makeServer('cdn'),
  }
  const host = opts.host ?? '127.0.0.1'
  urls.registry = await listen(servers.registry, host)
  urls.auth = await listen(servers.auth, host)
  urls.cdn = await listen(servers.cdn, host)

  const fake: FakeRegistry = {
    url: urls.registry,
    authUrl: urls.auth,
    cdnUrl: urls.cdn,
    service: SERVICE,
    requests,
    addBlob(bytes) {
      const d = sha256(bytes)
      blobs.set(d, bytes)
      return d
    },
    deleteBlob(digest) {
      blobs.delete(digest)
    },
    addManifest(name, body, mediaType, tag) {
      const d = sha256(body)
      const r = repo(name)
      r.manifests.set(d, { body, mediaType })
      if (tag !== undefined) r.tags.set(tag, d)
      return d
    },
    setTag(name, tag, digest) {
      repo(name).tags.set(tag, digest)
    },
    deleteTag(name, tag) {
      repos.get(name)?.tags.delete(tag)
    },
    addImage(name, tag, imageOpts) {
      const img = buildImage(name, tag, imageOpts)
      for (const b of img.blobs) blobs.set(b.digest, b.bytes)
      for (const m of img.manifests) fake.addManifest(name, m.body, m.mediaType)
      if (img.index) fake.addManifest(name, img.index.body, img.index.mediaType)
      fake.setTag(name, tag, img.digest)
      return img
    },
    count(filter) {
      return requests.filter((r) => matches(filter, r.server, r.method, r.path)).length
    },
    reset() {
      requests.length = 0
    },
    fault(f) {
      faults.push({ f, left: f.times ?? Infinity })
    },
    clearFaults() {
      faults = []
    },
    expireTokens() {
      for (const t of tokens.values()) t.expiresAt = 0
    },
    get rateLimitRemaining() {
      return rate?.remaining
    },
    async close() {
      if (closed) return
      closed = true
      for (const t of timers) clearTimeout(t)
      timers.clear()
      const all = Object.values(servers)
      const done = all.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
      for (const s of all) s.closeAllConnections()
      for (const s of sockets) s.destroy()
      sockets.clear()
      await Promise.all(done)
    },
  }
  return fake
}
