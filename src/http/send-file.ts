import { read } from 'node:fs'
import type { ServerResponse } from 'node:http'

const CHUNK = 256 * 1024
/** Buffers kept for reuse across responses: 16 MiB at most, whatever the number of clients. */
const POOL_MAX = 64
const pool: Buffer[] = []

/**
 * Sends bytes [start, start + length) of an open file on an HTTP/1.1 response (plain or TLS),
 * reading the next chunk while the last one is written. A file stream allocates a fresh buffer
 * for every read; at a gigabyte a second those buffers trigger a full garbage collection every
 * few tens of megabytes, which cost a third of the cache-hit throughput (bench/RESULTS.md). Here
 * a buffer goes back to a shared pool once the socket has taken its bytes (the write callback),
 * so a hit allocates nothing in steady state. HTTP/2 hits never come here: respondWithFD sends
 * from the file without JavaScript buffers at all.
 *
 * Resolves with the bytes handed to the socket; stops early, without error, when the client goes
 * away. Rejects when the file ends before `length` (it shrank under the mirror).
 */
export async function sendFile(
  res: ServerResponse,
  fd: number,
  start: number,
  length: number,
  onBytes: (n: number) => void,
): Promise<number> {
  let gone = res.destroyed
  let wake: (() => void) | undefined
  const nudge = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const onClose = () => {
    gone = true
    nudge()
  }
  res.on('close', onClose)
  // Two chunks per response at most, whatever the socket's own buffering says: one being
  // written, one being read. The write callbacks pace the loop.
  let inFlight = 0
  let sent = 0
  try {
    while (sent < length && !gone) {
      while (inFlight >= 2 && !gone) await new Promise<void>((r) => (wake = r))
      if (gone) break
      const buf = pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK)
      const n = await readAt(fd, buf, Math.min(CHUNK, length - sent), start + sent).catch((err: unknown) => {
        giveBack(buf)
        throw err
      })
      if (n === 0) {
        giveBack(buf)
        throw Object.assign(new Error(`cached file ended ${length - sent} bytes early`), { code: 'SIZE_CHANGED' })
      }
      if (gone) {
        giveBack(buf)
        break
      }
      inFlight++
      sent += n
      onBytes(n)
      // The callback runs once the socket no longer needs the bytes (or the write failed): only
      // then may the buffer be read into again.
      res.write(buf.subarray(0, n), () => {
        inFlight--
        giveBack(buf)
        nudge()
      })
    }
    if (!gone) res.end()
    return sent
  } finally {
    res.off('close', onClose)
  }
}

function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))))
}

function giveBack(buf: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buf)
}
