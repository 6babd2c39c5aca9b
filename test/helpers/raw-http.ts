import { connect, type Socket } from 'node:net'

/** Sends bytes exactly as given on a fresh connection; resolves with everything the server sent until it closed. */
export function rawHttp(base: string, bytes: string | Buffer): Promise<string> {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const s = connect(Number(u.port), u.hostname, () => s.write(bytes))
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(err),
    )
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
  })
}

/** The status code of the first response in raw HTTP text (0 if none). */
export function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0)
}

/** A connection that has sent `bytes` and then nothing more; `closed` resolves when the server hangs up. */
export function stuckClient(base: string, bytes: string): Promise<{ socket: Socket; closed: Promise<string> }> {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const s = connect(Number(u.port), u.hostname, () => {
      s.write(bytes)
      resolve({ socket: s, closed })
    })
    const closed = new Promise<string>((res) => {
      s.on('data', (c: Buffer) => chunks.push(c))
      s.on('close', () => res(Buffer.concat(chunks).toString('latin1')))
    })
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET') reject(err)
    })
  })
}
