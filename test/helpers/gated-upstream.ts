// A one-blob upstream whose blob responses send the first half of the body at once and the
// rest only when the test opens the gate, so a test can put clients into the middle of a
// fill without relying on timing. No auth, no redirects.
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface GatedUpstream {
  url: string
  /** Blob GETs received. */
  readonly blobGets: number
  /** How many bytes every blob response has sent before waiting at the gate. */
  readonly half: number
  /** Resolves once a blob response is waiting at the gate. */
  waiting(): Promise<void>
  /** Lets every waiting and later response finish. */
  open(): void
  /** Closes the gate again for later responses. */
  close(): void
  /** Send the second half with every byte flipped (a digest mismatch). */
  corrupt: boolean
  stop(): Promise<void>
}

export async function startGatedUpstream(bytes: Buffer): Promise<GatedUpstream> {
  const half = Math.floor(bytes.length / 2)
  let gate: Promise<void> | undefined
  let openGate = () => {}
  let notifyWaiting = () => {}
  let waitingP = new Promise<void>((r) => (notifyWaiting = r))
  let blobGets = 0
  const sockets = new Set<Socket>()
  const api = { corrupt: false }

  const closeGate = () => {
    gate = new Promise<void>((r) => (openGate = r))
    waitingP = new Promise<void>((r) => (notifyWaiting = r))
  }
  closeGate()

  const server = http.createServer((req, res) => {
    req.resume()
    if (!/^\/v2\/.+\/blobs\/sha256:[a-f0-9]{64}$/.test(req.url ?? '')) {
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')
      return
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-length': bytes.length })
      res.end()
      return
    }
    blobGets++
    const corrupt = api.corrupt
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length })
    res.write(bytes.subarray(0, half), () => {
      notifyWaiting()
      void gate?.then(() => {
        const rest = Buffer.from(bytes.subarray(half))
        if (corrupt) for (let i = 0; i < rest.length; i++) rest[i] = rest[i]! ^ 0xff
        res.end(rest)
      })
    })
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  return {
    url,
    half,
    get blobGets() {
      return blobGets
    },
    get corrupt() {
      return api.corrupt
    },
    set corrupt(v: boolean) {
      api.corrupt = v
    },
    waiting: () => waitingP,
    open: () => openGate(),
    close: closeGate,
    stop: async () => {
      openGate()
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
