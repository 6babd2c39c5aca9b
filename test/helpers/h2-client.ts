import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2'
import { readFileSync } from 'node:fs'

export interface H2Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

/** An HTTP/2 session to `url` trusting the CA in `caFile`; closed by the caller (or t.teardown). */
export async function h2connect(url: string, caFile: string): Promise<ClientHttp2Session> {
  const session = connect(url, { ca: readFileSync(caFile) })
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve())
    session.once('error', reject)
  })
  session.on('error', () => {})
  return session
}

/** One request on `session`; rejects if the stream is reset before the body ends. */
export function h2get(session: ClientHttp2Session, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ':method': method, ...headers })
    let status = 0
    let got: IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    stream.on('response', (h) => {
      got = h
      status = Number(h[':status'])
    })
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () => resolve({ status, headers: got, body: Buffer.concat(chunks) }))
    stream.on('error', reject)
    stream.on('close', () => {
      if (stream.rstCode !== 0) reject(new Error(`stream reset (${stream.rstCode})`))
    })
    stream.end()
  })
}
