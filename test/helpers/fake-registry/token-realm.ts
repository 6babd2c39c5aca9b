// The token realm (the "auth" server), Docker Hub style: GET /token, anonymous or with HTTP Basic, and POST /token
// with an OAuth2 password grant as containerd sends it. A token is good for the repositories its scopes ask to pull,
// until it expires; the registry routes ask authorize() before serving anything.
import type http from 'node:http'
import { randomBytes } from 'node:crypto'
import { jsonReply, ociError, textReply, type Reply } from './reply.js'
import type { ServerUrls } from './server.js'
import type { FakeRegistryOptions } from './start.js'

/** the `service` the challenge names */
export const SERVICE = 'fake-registry'

export type RealmOptions = Pick<FakeRegistryOptions, 'auth' | 'credentials' | 'users' | 'tokenTtlSeconds' | 'realm'>

interface Token {
  repos: Set<string>
  expiresAt: number
  /** the account it was issued to; undefined for an anonymous token */
  user?: string
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** The repositories a token request's scopes ask to pull (`repository:<name>:pull` or `:*`); the rest is ignored. */
function pullableRepos(scopes: string[]): Set<string> {
  const granted = new Set<string>()
  for (const s of scopes.flatMap((x) => x.split(' '))) {
    const first = s.indexOf(':')
    const last = s.lastIndexOf(':')
    if (first === -1 || last === first) continue
    if (s.slice(0, first) !== 'repository') continue
    const actions = s.slice(last + 1).split(',')
    if (actions.includes('pull') || actions.includes('*')) granted.add(s.slice(first + 1, last))
  }
  return granted
}

/** HTTP Basic wins over the password grant's form fields when a client sends both. */
function basicCredentials(req: http.IncomingMessage): { user: string; pass: string } | undefined {
  const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '')
  if (!basic?.[1]) return undefined
  const decoded = Buffer.from(basic[1], 'base64').toString('utf8')
  const i = decoded.indexOf(':')
  return { user: i === -1 ? decoded : decoded.slice(0, i), pass: i === -1 ? '' : decoded.slice(i + 1) }
}

export class TokenRealm {
  private readonly tokens = new Map<string, Token>()
  private readonly ttl: number

  constructor(
    private readonly opts: RealmOptions,
    private readonly urls: ServerUrls,
  ) {
    this.ttl = opts.tokenTtlSeconds ?? 300
  }

  /** undefined when allowed; else the 401 reply. `name` undefined for the /v2/ base endpoint. */
  authorize(req: http.IncomingMessage, name: string | undefined): Reply | undefined {
    if ((this.opts.auth ?? 'bearer') === 'none') return undefined
    const h = req.headers.authorization
    const m = h ? /^Bearer\s+(\S+)$/i.exec(h) : null
    const tok = m?.[1] ? this.tokens.get(m[1]) : undefined
    if (tok && tok.expiresAt > Date.now() && (name === undefined || tok.repos.has(name))) return undefined
    let challenge = `Bearer realm="${this.opts.realm ?? `${this.urls.auth}/token`}",service="${SERVICE}"`
    if (name !== undefined) challenge += `,scope="repository:${name}:pull"`
    if (h) challenge += tok && tok.expiresAt > Date.now() ? ',error="insufficient_scope"' : ',error="invalid_token"'
    const detail = name === undefined ? null : [{ Type: 'repository', Class: '', Name: name, Action: 'pull' }]
    return ociError(401, 'UNAUTHORIZED', 'authentication required', detail, { 'www-authenticate': challenge })
  }

  async route(req: http.IncomingMessage, u: URL): Promise<Reply> {
    const method = req.method ?? 'GET'
    if (u.pathname !== '/token') return textReply(404, '404 page not found\n')
    let params = u.searchParams
    let user: string | undefined
    let pass: string | undefined
    if (method === 'POST') {
      params = new URLSearchParams((await readBody(req)).toString('utf8'))
      if (params.get('grant_type') === 'password') {
        user = params.get('username') ?? undefined
        pass = params.get('password') ?? undefined
      }
    } else if (method !== 'GET') {
      return textReply(405, 'method not allowed\n')
    }
    const basic = basicCredentials(req)
    if (basic) ({ user, pass } = basic)
    const service = params.get('service')
    if (service !== null && service !== SERVICE) {
      return jsonReply(400, { details: `unknown service ${service}` })
    }
    const accounts = [...(this.opts.credentials ? [this.opts.credentials] : []), ...(this.opts.users ?? [])]
    if (accounts.length > 0 && !accounts.some((a) => a.username === user && a.password === pass)) {
      return jsonReply(401, { details: 'incorrect username or password' }, { 'www-authenticate': `Basic realm="${SERVICE}"` })
    }
    const token = randomBytes(24).toString('base64url')
    this.tokens.set(token, {
      repos: pullableRepos(params.getAll('scope')),
      expiresAt: Date.now() + this.ttl * 1000,
      user: accounts.length > 0 ? user : undefined,
    })
    return jsonReply(200, { token, access_token: token, expires_in: this.ttl, issued_at: new Date().toISOString() })
  }

  /** The account whose token the request carries (undefined: anonymous, or no valid token). */
  userOf(req: http.IncomingMessage): string | undefined {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')
    return m?.[1] ? this.tokens.get(m[1])?.user : undefined
  }

  /** makes every token issued so far invalid */
  expireAll(): void {
    for (const t of this.tokens.values()) t.expiresAt = 0
  }
}
