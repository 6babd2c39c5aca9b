// What each fault kind does once chosen: to the answer (status, redirect, redirectLoop, reply, header, endless,
// delayHeaders), to the body's bytes (truncate, extra, wrongBytes) and to the sending of the body (slow, stall,
// drop, endless).
import type http from 'node:http'
import { randomBytes } from 'node:crypto'
import type { Fault } from './faults.js'
import { ociError, redirectReply, type Reply } from './reply.js'

/** Timers that die with the fake: nothing scheduled runs after close. */
export interface Scheduler {
  readonly closed: boolean
  later(ms: number, fn: () => void): void
}

export interface Applied {
  /** the answer instead of the route's */
  reply?: Reply
  /** what is left of the fault for the sending */
  fault?: Fault
}

/** `answer` runs the route (at most once); `self` is the request's own URL. */
export async function applyToReply(
  fault: Fault | undefined,
  answer: () => Promise<Reply>,
  self: string,
  scheduler: Scheduler,
): Promise<Applied> {
  switch (fault?.kind) {
    case undefined:
      return {}
    case 'delayHeaders': {
      const ms = fault.ms
      await new Promise<void>((resolve) => scheduler.later(ms, resolve))
      return {}
    }
    case 'status': {
      const code = fault.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE'
      const extra: Record<string, string> = fault.retryAfter !== undefined ? { 'retry-after': fault.retryAfter } : {}
      return { reply: ociError(fault.status, code, `fault: status ${fault.status}`, null, extra) }
    }
    case 'redirectLoop':
      return { reply: redirectReply(self) }
    case 'redirect':
      return { reply: redirectReply(fault.location) }
    case 'reply': {
      const body = typeof fault.body === 'string' ? Buffer.from(fault.body) : (fault.body ?? Buffer.alloc(0))
      const reply = { status: fault.status, headers: { ...fault.headers }, body }
      return fault.chunked ? { reply, fault } : { reply }
    }
    case 'endless':
      return { reply: { status: 200, headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(0) }, fault }
    case 'header': {
      const r = await answer()
      const headers = { ...r.headers }
      if (fault.value === null) delete headers[fault.name.toLowerCase()]
      else headers[fault.name.toLowerCase()] = fault.value
      return { reply: { ...r, headers }, fault }
    }
    default:
      return { fault }
  }
}

/** The body as the fault has it: cut short, with random bytes added, or every byte flipped. */
export function shapeBody(fault: Fault | undefined, body: Buffer): Buffer {
  if (fault?.kind === 'truncate') return body.subarray(0, Math.max(0, fault.afterBytes))
  if (fault?.kind === 'extra') return Buffer.concat([body, randomBytes(fault.bytes)])
  if (fault?.kind === 'wrongBytes') {
    const flipped = Buffer.from(body)
    for (let i = 0; i < flipped.length; i++) flipped[i] = flipped[i]! ^ 0xff
    return flipped
  }
  return body
}

/** Whether the sender sets Content-Length to the body's length. */
export function sizesBody(fault: Fault | undefined, headers: Record<string, string>): boolean {
  if (fault?.kind === 'endless' || (fault?.kind === 'reply' && fault.chunked === true)) return false
  // A 'header' fault may have set its own (lying) Content-Length: it stands.
  return !(fault?.kind === 'header' && headers['content-length'] !== undefined)
}

/** Writes the body after the headers went out, the way the fault (if any) has it sent. */
export function writeBody(res: http.ServerResponse, method: string, body: Buffer, fault: Fault | undefined, scheduler: Scheduler): void {
  if (fault?.kind === 'endless' && method !== 'HEAD') return pumpEndless(res, scheduler)
  if (method === 'HEAD' || body.length === 0) {
    res.end()
    return
  }
  if (fault?.kind === 'slow') return sendSlowly(res, body, fault.bytesPerSecond, scheduler)
  if (fault?.kind === 'stall') {
    const part = body.subarray(0, Math.max(0, fault.afterBytes))
    if (part.length > 0) res.write(part)
    else res.flushHeaders()
    return // never ends; close() destroys the socket
  }
  if (fault?.kind === 'drop') {
    const part = body.subarray(0, Math.max(0, fault.afterBytes))
    const socket = res.socket
    if (part.length > 0) res.write(part, () => socket?.destroy())
    else {
      res.flushHeaders()
      socket?.end() // FIN after the headers are flushed
    }
    return
  }
  res.end(body)
}

function pumpEndless(res: http.ServerResponse, scheduler: Scheduler): void {
  const chunk = randomBytes(64 * 1024)
  // One write per turn of the event loop, and a pause whenever the socket is full.
  const pump = (): void => {
    if (scheduler.closed || res.destroyed) return
    if (res.write(chunk)) setImmediate(pump)
    else res.once('drain', pump)
  }
  pump()
}

/** In 20 slices a second, so a client sees a steady trickle rather than bursts. */
function sendSlowly(res: http.ServerResponse, body: Buffer, bytesPerSecond: number, scheduler: Scheduler): void {
  const chunk = Math.max(1, Math.ceil(bytesPerSecond / 20))
  let off = 0
  const tick = (): void => {
    if (res.destroyed) return
    const next = body.subarray(off, off + chunk)
    off += next.length
    if (off >= body.length) res.end(next)
    else {
      res.write(next)
      scheduler.later(50, tick)
    }
  }
  res.flushHeaders()
  scheduler.later(50, tick)
}
