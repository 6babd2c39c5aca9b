/**
 * A Docker-Hub-like token server (the "realm" of a `Bearer` challenge) for e2e tests, on 127.0.0.1.
 *
 * Tokens are JWTs signed ES256 with a throw-away P-256 key; the self-signed certificate for that key is written to
 * `certPath` (give it to distribution as `auth.token.rootcertbundle`) and sent in each token's `x5c` header.
 * distribution 2.8 (registry/auth/token/token.go) accepts the signing key from `x5c` (chain verified against the
 * root bundle, any EKU), from `jwk`, or from `kid` as a libtrust fingerprint; `x5c` is the simplest. Its claim `aud`
 * is a single string in 2.8 (an array fails to parse), and `iss` must equal the configured issuer.
 *
 * Endpoints: `GET /token?service=&scope=&scope=&account=` (HTTP Basic optional) and the OAuth2 form
 * `POST /token` (grant_type=password). Scopes are `type:name:actions`.
 * Without `users`, every requested action is granted to everyone. With `users`, wrong credentials get 401; pull is
 * granted anonymously unless `anonymousPull: false`; push/delete/`*` only to an authenticated user. Like Docker Hub,
 * an action that is not allowed is left out of the token (the registry then answers 401 insufficient_scope).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { randomUUID, sign, X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import { runProgram } from './child-program.js'

export interface TokenServerOptions {
  /** username → password. Without it, no authentication at all. */
  users?: Record<string, string>
  /** With `users`: grant `pull` to anonymous clients too (default true, like public Docker Hub images). */
  anonymousPull?: boolean
  service?: string
  issuer?: string
  /** Lifetime of issued tokens (`expires_in`), default 300 s. */
  tokenTtlSeconds?: number
}

export interface TokenRequestRecord {
  method: string
  path: string
  /** The user from HTTP Basic or the form, if any. */
  account?: string
  authenticated: boolean
  /** Scopes as requested, e.g. `repository:library/alpine:pull`. */
  scopes: string[]
  /** Scopes as granted (actions filtered), same format; empty when the request was refused. */
  granted: string[]
  status: number
}

export interface TokenServer {
  /** Base URL, `http://127.0.0.1:PORT`. */
  url: string
  /** The token endpoint, `http://127.0.0.1:PORT/token`: distribution's `auth.token.realm`. */
  realm: string
  service: string
  issuer: string
  /** PEM certificate of the signing key: distribution's `auth.token.rootcertbundle`. */
  certPath: string
  tokensIssued(): number
  requests(): TokenRequestRecord[]
  stop(): Promise<void>
}

interface Access {
  type: string
  name: string
  actions: string[]
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url')
}

function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':')
  const last = scope.lastIndexOf(':')
  if (first <= 0 || last === first) return undefined
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .filter((a) => a !== ''),
  }
}

function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  if (header === undefined) return undefined
  const match = /^Basic\s+(\S+)$/i.exec(header)
  if (!match?.[1]) return undefined
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export async function startTokenServer(opts: TokenServerOptions = {}): Promise<TokenServer> {
  const dir = await makeTempDir('token')
  const keyPath = join(dir, 'signing-key.pem')
  const certPath = join(dir, 'signing-cert.pem')
  try {
    await runProgram('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '2',
      '-subj',
      '/CN=regmirror-e2e-token-signer',
    ])
  } catch (err) {
    await removeTempDir(dir)
    throw err
  }
  const key: KeyObject = createPrivateKey(await readFile(keyPath))
  const certDer = new X509Certificate(await readFile(certPath)).raw
  const service = opts.service ?? 'regmirror-e2e-registry'
  const issuer = opts.issuer ?? 'regmirror-e2e-token-issuer'
  const ttl = opts.tokenTtlSeconds ?? 300
  const users = opts.users
  const anonymousPull = opts.anonymousPull ?? true
  const log: TokenRequestRecord[] = []
  let issued = 0

  const makeToken = (subject: string, access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000)
    const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] }
    const claims = { iss: issuer, sub: subject, aud: service, exp: now + ttl, nbf: now - 5, iat: now, jti: randomUUID(), access }
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`
    const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' })
    return `${signingInput}.${base64url(signature)}`
  }

  const allowed = (authenticated: boolean, action: string): boolean => {
    if (users === undefined || authenticated) return true
    return action === 'pull' && anonymousPull
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const record: TokenRequestRecord = {
      method: req.method ?? '',
      path: url.pathname,
      authenticated: false,
      scopes: [],
      granted: [],
      status: 0,
    }
    log.push(record)
    const reply = (status: number, body: unknown): void => {
      record.status = status
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    if (url.pathname !== '/token') return reply(404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] })

    let credentials: { user: string; password: string } | undefined
    let scopeParams: string[]
    if (req.method === 'GET') {
      credentials = parseBasic(req.headers.authorization)
      scopeParams = url.searchParams.getAll('scope')
      record.account = credentials?.user ?? url.searchParams.get('account') ?? undefined
    } else if (req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req))
      const grant = form.get('grant_type')
      if (grant !== 'password')
        return reply(400, { error: 'unsupported_grant_type', error_description: `grant_type ${grant ?? ''} not supported` })
      credentials = { user: form.get('username') ?? '', password: form.get('password') ?? '' }
      scopeParams = form.getAll('scope')
      record.account = credentials.user
    } else {
      return reply(405, { errors: [{ code: 'UNSUPPORTED', message: 'method not allowed' }] })
    }
    record.scopes = scopeParams.flatMap((s) => s.split(' ')).filter((s) => s !== '')

    let authenticated = false
    if (credentials !== undefined) {
      if (users !== undefined && users[credentials.user] !== credentials.password) {
        return reply(401, { errors: [{ code: 'UNAUTHORIZED', message: 'incorrect username or password' }] })
      }
      authenticated = true
    }
    record.authenticated = authenticated

    const access: Access[] = []
    for (const scope of record.scopes) {
      const parsed = parseScope(scope)
      if (parsed === undefined) continue
      const actions = parsed.actions.filter((a) => allowed(authenticated, a))
      access.push({ ...parsed, actions })
      record.granted.push(`${parsed.type}:${parsed.name}:${actions.join(',')}`)
    }
    const token = makeToken(record.account ?? '', access)
    issued++
    reply(200, { token, access_token: token, expires_in: ttl, issued_at: new Date().toISOString() })
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
      res.end(String(err))
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('token server: no TCP address')
  const url = `http://127.0.0.1:${address.port}`

  let stopped: Promise<void> | undefined
  return {
    url,
    realm: `${url}/token`,
    service,
    issuer,
    certPath,
    tokensIssued: () => issued,
    requests: () => log.slice(),
    stop() {
      stopped ??= (async () => {
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
        await removeTempDir(dir)
      })()
      return stopped
    },
  }
}
