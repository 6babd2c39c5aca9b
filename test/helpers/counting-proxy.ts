/**
 * A tiny reverse proxy on 127.0.0.1 that records every request it forwards (method, path, query, status, bytes).
 * Put in front of a real program so a test can count exactly what reached it. A request is recorded when the
 * target's response headers arrive, before they are forwarded: by the time a client sees a response, its record
 * exists (no race with a log file). `bytes` grows while the body streams and is final once `done` is true.
 * The Host header is forwarded unchanged, so absolute URLs the target builds (upload Locations) point at the proxy.
 */
import { readFileSync } from 'node:fs'
import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type RequestListener } from 'node:http'
import { createServer as createTlsServer } from 'node:https'

export interface RequestRecord {
  method: string
  /** Path without the query string, e.g. `/v2/library/alpine/blobs/sha256:...`. */
  path: string
  /** The query string with its `?`, or ''. */
  query: string
  /** The request headers as received (lower-case names). */
  headers: IncomingHttpHeaders
  /** The address the request's connection came from. */
  from: string
  status: number
  /** Response body bytes forwarded to the client so far. */
  bytes: number
  /** The response was forwarded completely (or the client went away). */
  done: boolean
}

export interface CountingProxy {
  port: number
  url: string
  requests(): RequestRecord[]
  /** Remote addresses of the connections `onlyFrom` closed. */
  refused(): string[]
  stop(): Promise<void>
}

/** What a faulty proxy does with one request: answer it with `status` itself, or cut the target's body after `cutAfter` bytes. */
export type Fault = { status: number } | { cutAfter: number }

export interface CountingProxyOptions {
  /**
   * Emulates a slow link to the upstream (a site's WAN link to Docker Hub): all response bodies together
   * are paced to this many bytes per second. Unset: as fast as loopback goes.
   */
  bytesPerSecond?: number
  /** Listen on this address instead of 127.0.0.1. */
  host?: string
  /** Speak HTTPS with this certificate and key (PEM files): an HTTPS upstream. */
  tls?: { cert: string; key: string }
  /** Close at once every connection that does not come from this address (an upstream only a proxy can reach). */
  onlyFrom?: string
  /**
   * Fault injection, asked for every request (recorded like any other): a status answers it without
   * reaching the target (a 503 from a broken mirror); `cutAfter` forwards that many body bytes of the
   * target's answer, then destroys the connection (a link that breaks mid-blob). Not with `bytesPerSecond`.
   */
  fault?: (req: { method: string; path: string }) => Fault | undefined
}

export async function startCountingProxy(targetPort: number, opts: CountingProxyOptions = {}): Promise<CountingProxy> {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 })
  const log: RequestRecord[] = []
  // One schedule for the whole link: each chunk is sent when the link would have finished the ones before it.
  let linkFreeAt = 0
  const pace = (n: number): number => {
    if (!opts.bytesPerSecond) return 0
    const now = performance.now()
    const start = Math.max(now, linkFreeAt)
    linkFreeAt = start + (n / opts.bytesPerSecond) * 1000
    return linkFreeAt - now
  }
  const handler: RequestListener = (req, res) => {
    const raw = req.url ?? '/'
    const q = raw.indexOf('?')
    const path = q < 0 ? raw : raw.slice(0, q)
    const query = q < 0 ? '' : raw.slice(q)
    const fault = opts.fault?.({ method: req.method ?? '', path })
    if (fault && 'status' in fault) {
      log.push({
        method: req.method ?? '',
        path,
        query,
        headers: req.headers,
        from: req.socket.remoteAddress ?? '',
        status: fault.status,
        bytes: 0,
        done: true,
      })
      req.resume()
      res.writeHead(fault.status, { 'content-type': 'text/plain', connection: 'close' })
      res.end('counting proxy: injected fault\n')
      return
    }
    const upstream = httpRequest(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: raw, headers: req.headers, agent },
      (upRes) => {
        const record: RequestRecord = {
          method: req.method ?? '',
          path,
          query,
          headers: req.headers,
          from: req.socket.remoteAddress ?? '',
          status: upRes.statusCode ?? 0,
          bytes: 0,
          done: false,
        }
        log.push(record)
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders)
        if (fault && 'cutAfter' in fault) {
          upRes.on('data', (chunk: Buffer) => {
            const room = fault.cutAfter - record.bytes
            if (room > 0) {
              record.bytes += Math.min(room, chunk.length)
              res.write(chunk.subarray(0, room))
            }
            if (record.bytes >= fault.cutAfter) {
              upRes.destroy()
              // Flushed first, so the client gets exactly `cutAfter` bytes and then a broken connection.
              res.socket?.end(() => res.socket?.destroy())
            }
          })
          upRes.on('end', () => {
            if (record.bytes < fault.cutAfter) res.end()
          })
          res.on('close', () => {
            record.done = true
            if (!upRes.complete) upRes.destroy()
          })
          return
        }
        upRes.on('data', (chunk: Buffer) => {
          record.bytes += chunk.length
        })
        if (opts.bytesPerSecond) {
          upRes.on('data', (chunk: Buffer) => {
            const delay = pace(chunk.length)
            if (delay < 1) {
              if (!res.write(chunk)) upRes.pause()
              return
            }
            upRes.pause()
            setTimeout(() => {
              if (res.write(chunk)) upRes.resume()
              else res.once('drain', () => upRes.resume())
            }, delay)
          })
          res.on('drain', () => upRes.resume())
          upRes.on('end', () => {
            // The last chunk may still be waiting for its slot.
            setTimeout(() => res.end(), Math.max(0, linkFreeAt - performance.now()))
          })
        } else upRes.pipe(res)
        res.on('close', () => {
          record.done = true
          if (!upRes.complete) upRes.destroy()
        })
      },
    )
    upstream.on('error', (err) => {
      const from = req.socket.remoteAddress ?? ''
      log.push({ method: req.method ?? '', path, query, headers: req.headers, from, status: 502, bytes: 0, done: true })
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' })
        res.end(`counting proxy: ${err.message}`)
      } else {
        res.destroy(err)
      }
    })
    req.pipe(upstream)
    req.on('aborted', () => upstream.destroy())
  }
  const server = opts.tls
    ? createTlsServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, handler)
    : createServer(handler)
  const refused: string[] = []
  if (opts.onlyFrom !== undefined) {
    server.on('connection', (socket) => {
      if (socket.remoteAddress === opts.onlyFrom) return
      refused.push(socket.remoteAddress ?? '')
      socket.destroy()
    })
  }
  const host = opts.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('counting proxy: no TCP address')
  let stopped: Promise<void> | undefined
  return {
    port: address.port,
    url: `${opts.tls ? 'https' : 'http'}://${host}:${address.port}`,
    requests: () => log.slice(),
    refused: () => refused.slice(),
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.closeAllConnections()
        agent.destroy()
        server.close(() => resolve())
      })
      return stopped
    },
  }
}
