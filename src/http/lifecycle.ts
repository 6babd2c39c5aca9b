import type { Server } from 'node:http'
import type { Http2SecureServer } from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../log.js'
import type { Listeners } from './server.js'

type Listen = { host: string; port: number }

function listenOne(server: Server | Http2SecureServer, at: Listen): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(at.port, at.host, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}

/** Starts the listeners; resolves with their addresses. */
export async function listenAll(
  l: Listeners,
  plainAt: Listen,
  tlsAt: Listen,
  reloadMs: number,
): Promise<{ plain: AddressInfo; tls?: AddressInfo }> {
  const plain = await listenOne(l.plain, plainAt)
  if (!l.tls) return { plain }
  const tls = await listenOne(l.tls.server, tlsAt)
  l.tls.certs.start(reloadMs)
  return { plain, tls }
}

/** `http://host:port` of an address, with a wildcard address written as loopback. */
export function urlOf(scheme: 'http' | 'https', addr: AddressInfo): string {
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return `${scheme}://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${addr.port}`
}

/**
 * A graceful stop: no new connections; keep-alive connections close as soon as they are idle
 * (HTTP/2 sessions get a GOAWAY and end when their streams have); responses in flight may finish
 * until `deadlineMs`, after which every connection is closed.
 */
export async function drain(l: Listeners, deadlineMs: number, log: Logger): Promise<void> {
  l.tls?.certs.stop()
  const closed = [closeServer(l.plain), ...(l.tls ? [closeServer(l.tls.server)] : [])]
  for (const session of l.tls?.sessions ?? []) session.close()
  const sweep = setInterval(() => {
    l.plain.closeIdleConnections()
    // HTTP/1.1 over TLS: with nothing in flight, what is left is idle.
    if (l.inFlight() === 0) for (const socket of l.tls?.sockets ?? []) socket.destroy()
  }, 100)
  l.plain.closeIdleConnections()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), deadlineMs)))
  if ((await Promise.race([Promise.all(closed), deadline])) === 'deadline') {
    log.warn('shutdown deadline passed; closing remaining connections')
    closeNow(l)
    await Promise.all(closed)
  }
  clearInterval(sweep)
  clearTimeout(timer)
}

/** Closes every listener and connection at once. */
export function closeNow(l: Listeners): Promise<unknown> {
  l.tls?.certs.stop()
  const closed = [closeServer(l.plain), ...(l.tls ? [closeServer(l.tls.server)] : [])]
  l.plain.closeAllConnections()
  for (const session of l.tls?.sessions ?? []) session.destroy()
  for (const socket of l.tls?.sockets ?? []) socket.destroy()
  return Promise.all(closed)
}

function closeServer(server: Server | Http2SecureServer): Promise<void> {
  if (!server.listening) return Promise.resolve()
  return new Promise((resolve) => server.close(() => resolve()))
}
