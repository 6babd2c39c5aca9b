import { createHmac, timingSafeEqual } from 'node:crypto'

/** The header a peer request carries: `<unix seconds>.<hex HMAC-SHA256 of "<seconds>\n<path and query>">`. */
export const PEER_HEADER = 'x-regmirror-peer'

/** How far a signature's time may be from the receiver's clock: a captured request is useless after this. */
const WINDOW_SECONDS = 60

export function signPeerRequest(secret: string, pathAndQuery: string, nowMs = Date.now()): string {
  const ts = Math.floor(nowMs / 1000)
  return `${ts}.${mac(secret, ts, pathAndQuery)}`
}

/** Whether `header` signs exactly this path with `secret`, recently enough. */
export function verifyPeerRequest(secret: string, pathAndQuery: string, header: string | undefined, nowMs = Date.now()): boolean {
  const m = /^(\d{1,12})\.([a-f0-9]{64})$/.exec(header ?? '')
  if (!m) return false
  const ts = Number(m[1])
  if (Math.abs(nowMs / 1000 - ts) > WINDOW_SECONDS) return false
  const want = Buffer.from(mac(secret, ts, pathAndQuery), 'hex')
  return timingSafeEqual(want, Buffer.from(m[2] as string, 'hex'))
}

function mac(secret: string, ts: number, pathAndQuery: string): string {
  return createHmac('sha256', secret).update(`${ts}\n${pathAndQuery}`).digest('hex')
}
