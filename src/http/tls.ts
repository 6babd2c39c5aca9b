import { readFileSync } from 'node:fs'
import {
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2'
import { createSecureContext } from 'node:tls'
import { watchFiles } from '../file-watch.js'
import type { Logger } from '../log.js'

export interface TlsPair {
  cert: Buffer
  key: Buffer
}

/**
 * Reads a certificate and its key and checks that they load and belong together (OpenSSL checks
 * the key against the certificate when the context is made). Throws an Error naming the file and
 * the reason; never a secret.
 */
export function loadPair(certFile: string, keyFile: string): TlsPair {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
  }
  const pair = { cert: read(certFile, 'certificate'), key: read(keyFile, 'key') }
  try {
    createSecureContext({ ...pair, minVersion: 'TLSv1.2' })
  } catch (err) {
    throw new Error(`the TLS certificate ${certFile} and key ${keyFile} do not load: ${(err as Error).message}`)
  }
  return pair
}

/**
 * Certificates rotate (cert-manager, certbot): both files are watched (file-watch.ts) and, when
 * either changed, the pair is loaded again and becomes the server's context. Connections already
 * open keep theirs. A pair that does not load leaves the old one in place and is logged.
 */
export class CertificateWatcher {
  private watch: { stop(): void } | undefined

  constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    private readonly apply: (pair: TlsPair) => void,
    private readonly log: Logger,
  ) {}

  start(intervalMs: number): void {
    this.watch = watchFiles([this.certFile, this.keyFile], intervalMs, () => this.reload())
  }

  stop(): void {
    this.watch?.stop()
  }

  private reload(): void {
    try {
      this.apply(loadPair(this.certFile, this.keyFile))
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'new TLS certificate not loaded; keeping the previous one')
      return
    }
    this.log.info({ cert: this.certFile }, 'TLS certificate reloaded')
  }
}

export interface TlsServerOptions {
  pair: TlsPair
  maxConcurrentStreams: number
  maxHeaderSize: number
}

/**
 * The TLS listener: HTTP/2 and HTTP/1.1 on one port (ALPN), TLS 1.2 at least. Abuse of HTTP/2 is
 * bounded by Node's nghttp2 (a client resetting streams faster than 33 a second after a burst of
 * 1000, CVE-2023-44487, gets a GOAWAY; SETTINGS and PING floods end the session; test/integration/
 * tls.test.ts floods it) and by the limits set here. The sessions are kept for a graceful shutdown (GOAWAY, then close).
 */
export function createTlsServer(
  opts: TlsServerOptions,
  handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
): { server: Http2SecureServer; sessions: Set<Http2Session> } {
  const sessions = new Set<Http2Session>()
  const server = createSecureServer(
    {
      ...opts.pair,
      allowHTTP1: true,
      minVersion: 'TLSv1.2',
      // The windows advertised here bound what a client may send before it is read: request bodies,
      // which this mirror never reads, so they stay at HTTP/2's default (64 KiB). What bounds sending
      // blobs is the client's own windows (Go clients: 4 MiB a stream, 1 GiB a connection).
      settings: { maxConcurrentStreams: opts.maxConcurrentStreams, maxHeaderListSize: opts.maxHeaderSize },
      maxHeaderListPairs: 128,
      maxOutstandingPings: 10,
      maxSettings: 32,
      // MB a session may hold queued for its socket before new streams are refused.
      maxSessionMemory: 32,
    },
    handler,
  )
  server.on('session', (session: Http2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
  })
  return { server, sessions }
}
