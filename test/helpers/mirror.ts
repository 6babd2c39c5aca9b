import { request, type IncomingMessage } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createApp, type App } from '../../src/app.js'
import { resolveConfig } from '../../src/config/load.js'
import { createLogger } from '../../src/log.js'

export interface TestMirror {
  app: App
  url: string
  /** `https://127.0.0.1:PORT` of the TLS listener, when the config has one. */
  tlsUrl?: string
  dataDir: string
  /** Every log line the mirror wrote, raw JSON text. */
  logs: string[]
  close(): Promise<void>
}

interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * The real app on 127.0.0.1:0 with a temp data dir. `raw` is a config object as in the YAML
 * file; well-known upstreams are off unless the test names them, so nothing can reach out.
 */
export async function startMirror(t: Teardown, raw: Record<string, unknown>, opts: { dataDir?: string } = {}): Promise<TestMirror> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'regmirror-test-')))
  const config = resolveConfig({ wellKnownUpstreams: false, listen: '127.0.0.1:0', dataDir, ...raw })
  const logs: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l.length > 0),
      )
      cb()
    },
  })
  const app = await createApp(config, { logger: createLogger(process.env.REGMIRROR_TEST_LOG ?? 'info', sink) })
  await app.listen()
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await app.close()
  }
  t.teardown(async () => {
    await close()
    // Retried: a fill the closed app gave up may still be removing its temp file (ENOTEMPTY seen under load), and a
    // teardown that throws leaves the test's other servers open until tap's timeout.
    if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })
  })
  return { app, url: app.url(), tlsUrl: app.tlsUrl(), dataDir, logs, close }
}

/** A GET through plain fetch, body as a Buffer. No Accept header unless `headers` has one (see oci-http.ts). */
export async function get(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(url, { method, headers })
  const body = Buffer.from(await res.arrayBuffer())
  return { status: res.status, headers: res.headers, body }
}

/** A request whose path is sent exactly as given (fetch would normalise `..` and encodings away). */
export function rawRequest(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: import('node:http').IncomingHttpHeaders; body: Buffer }> {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** A GET whose response body the client does not read until `body()` is called: a paused socket holds data back. */
export function pausedGet(url: string): Promise<{ res: IncomingMessage; body: () => Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      res.pause()
      const chunks: Buffer[] = []
      const body = () =>
        new Promise<Buffer>((done, fail) => {
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => done(Buffer.concat(chunks)))
          res.on('error', fail)
          res.resume()
        })
      resolve({ res, body })
    })
    req.on('error', reject)
    req.end()
  })
}
