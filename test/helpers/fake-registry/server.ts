// The plumbing: three node:http servers on port 0 (registry, token realm, CDN), every request recorded, the chosen
// fault applied around the route's reply, and a close() that leaves no timer, socket or server behind.
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { applyToReply, shapeBody, sizesBody, writeBody, type Scheduler } from './fault-effects.js'
import type { Fault, FaultSet } from './faults.js'
import { ociError, type Reply } from './reply.js'

export type ServerName = 'registry' | 'auth' | 'cdn'

/** Base URL of each server; empty until it listens, so routes read it per request. */
export type ServerUrls = Record<ServerName, string>

export type Route = (req: http.IncomingMessage, u: URL) => Reply | Promise<Reply>

export interface RecordedRequest {
  server: ServerName
  method: string
  /** with query */
  path: string
  headers: Record<string, string | string[] | undefined>
  /** status sent (0 while not answered yet, e.g. during delayHeaders) */
  status: number
  /** Date.now() when it arrived */
  at: number
  /** Date.now() when its answer was written whole (undefined while it is being sent, or if it never was) */
  doneAt?: number
}

export interface ServersOptions {
  host: string
  /** filled in as the servers listen */
  urls: ServerUrls
  routes: Record<ServerName, Route>
  faults: FaultSet
  /** every request is pushed here as it arrives */
  requests: RecordedRequest[]
}

class Lifetime implements Scheduler {
  closed = false
  private readonly timers = new Set<NodeJS.Timeout>()

  later(ms: number, fn: () => void): void {
    if (this.closed) return
    const t = setTimeout(() => {
      this.timers.delete(t)
      if (!this.closed) fn()
    }, ms)
    this.timers.add(t)
  }

  end(): void {
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }
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

/** Starts the three servers; the returned function closes them. */
export async function startServers(o: ServersOptions): Promise<() => Promise<void>> {
  const servers = new Servers(o)
  await servers.listen()
  return () => servers.close()
}

class Servers {
  private readonly life = new Lifetime()
  private readonly sockets = new Set<Socket>()
  private readonly servers: Record<ServerName, http.Server>

  constructor(private readonly o: ServersOptions) {
    this.servers = { registry: this.makeServer('registry'), auth: this.makeServer('auth'), cdn: this.makeServer('cdn') }
  }

  async listen(): Promise<void> {
    for (const name of ['registry', 'auth', 'cdn'] as const) this.o.urls[name] = await listen(this.servers[name], this.o.host)
  }

  async close(): Promise<void> {
    if (this.life.closed) return
    this.life.end()
    const all = Object.values(this.servers)
    const done = all.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
    for (const s of all) s.closeAllConnections()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    await Promise.all(done)
  }

  private makeServer(name: ServerName): http.Server {
    const server = http.createServer((req, res) => {
      this.handle(name, req, res).catch((err: unknown) => {
        if (res.headersSent || this.life.closed) {
          res.destroy()
          return
        }
        const r = ociError(500, 'UNKNOWN', `fake registry error: ${String(err)}`)
        res.writeHead(500, { ...r.headers, 'content-length': String(r.body.length) })
        res.end(r.body)
      })
    })
    server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    return server
  }

  private async handle(server: ServerName, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET'
    const path = req.url ?? '/'
    const rec: RecordedRequest = { server, method, path, headers: { ...req.headers }, status: 0, at: Date.now() }
    res.once('finish', () => (rec.doneAt = Date.now()))
    this.o.requests.push(rec)
    const u = new URL(path, this.o.urls[server])
    // The token realm reads a POST's form body; every other body is drained unread.
    if (!(server === 'auth' && method === 'POST')) req.resume()
    let reply: Reply | undefined
    const answer = async (): Promise<Reply> => (reply ??= await this.o.routes[server](req, u))
    const chosen = await this.o.faults.choose(server, method, path, answer)
    const applied = await applyToReply(chosen, answer, `${this.o.urls[server]}${path}`, this.life)
    this.send(server, req, res, rec, applied.reply ?? (await answer()), applied.fault)
  }

  private send(
    server: ServerName,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    rec: RecordedRequest,
    reply: Reply,
    fault?: Fault,
  ): void {
    if (this.life.closed || res.destroyed) return
    const body = shapeBody(fault, reply.body)
    const headers: Record<string, string> = { ...reply.headers }
    if (server === 'registry') headers['docker-distribution-api-version'] = 'registry/2.0'
    if (sizesBody(fault, headers)) headers['content-length'] = String(body.length)
    rec.status = reply.status
    res.writeHead(reply.status, headers)
    writeBody(res, req.method ?? 'GET', body, fault, this.life)
  }
}
