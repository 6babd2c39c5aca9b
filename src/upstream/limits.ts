/**
 * What one upstream may take of the site's link (`maxConcurrent`, `maxRequestsPerSecond`, `maxMbps`): a gate
 * that requests pass in arrival order, and a pace that the blob bodies of that upstream share. Nothing is
 * buffered to keep a limit: a request waits before it is sent, a body is read no faster than its share.
 */
import { RegmirrorError } from '../errors.js'

export interface GateEvents {
  /** A request left the queue (admitted or timed out) after `ms`. */
  waited(ms: number, admitted: boolean): void
  queueLength(n: number): void
}

interface Waiter {
  admit(): void
  timer?: NodeJS.Timeout
}

/**
 * In-flight requests (`maxConcurrent`) and their start rate (`maxRequestsPerSecond`, no bursts: one request
 * every 1/rate seconds), with one FIFO queue for both: a request that cannot start waits behind the earlier
 * ones, at most `maxWaitMs`, then fails with UPSTREAM_QUEUE_TIMEOUT.
 */
export class Gate {
  private active = 0
  private readonly queue: Waiter[] = []
  /** When the next request may start (rate limit). */
  private nextStart = 0
  private rateTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly upstream: string,
    private readonly maxConcurrent: number,
    private readonly perSecond: number,
    private readonly maxWaitMs: number,
    private readonly events: GateEvents,
  ) {}

  get limited(): boolean {
    return this.maxConcurrent > 0 || this.perSecond > 0
  }

  /** Waits for a turn; resolves with the function that gives the turn back (once, however often it is called). */
  acquire(): Promise<() => void> {
    if (!this.limited) return Promise.resolve(() => {})
    const started = Date.now()
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        admit: () => {
          clearTimeout(w.timer)
          this.events.waited(Date.now() - started, true)
          resolve(this.releaser())
        },
      }
      this.queue.push(w)
      this.pump()
      if (!this.queue.includes(w)) return
      this.events.queueLength(this.queue.length)
      w.timer = setTimeout(() => {
        const i = this.queue.indexOf(w)
        if (i < 0) return
        this.queue.splice(i, 1)
        this.events.queueLength(this.queue.length)
        this.events.waited(Date.now() - started, false)
        reject(this.timeoutError())
        // The head may have been the one holding the others back (waiting for its rate slot).
        this.pump()
      }, this.maxWaitMs)
    })
  }

  /** One more start within a turn already held (a retry): only the rate applies, the wait is not bounded. */
  async spend(): Promise<void> {
    if (this.perSecond <= 0) return
    const now = Date.now()
    const at = Math.max(now, this.nextStart)
    this.nextStart = at + 1000 / this.perSecond
    if (at > now) await new Promise((r) => setTimeout(r, at - now))
  }

  private releaser(): () => void {
    let done = false
    return () => {
      if (done) return
      done = true
      this.active--
      this.pump()
    }
  }

  private pump(): void {
    while (this.queue.length > 0) {
      if (this.maxConcurrent > 0 && this.active >= this.maxConcurrent) return
      const now = Date.now()
      if (this.perSecond > 0 && now < this.nextStart) {
        if (!this.rateTimer) {
          this.rateTimer = setTimeout(() => {
            this.rateTimer = undefined
            this.pump()
          }, this.nextStart - now)
        }
        return
      }
      const w = this.queue.shift()!
      this.active++
      if (this.perSecond > 0) this.nextStart = now + 1000 / this.perSecond
      this.events.queueLength(this.queue.length)
      w.admit()
    }
  }

  private timeoutError(): RegmirrorError {
    return new RegmirrorError(
      'UPSTREAM_QUEUE_TIMEOUT',
      `no turn to ask upstream ${this.upstream} within ${this.maxWaitMs} ms (maxConcurrent/maxRequestsPerSecond)`,
      { detail: { upstream: this.upstream }, retryAfter: String(Math.max(1, Math.ceil(this.maxWaitMs / 1000))) },
    )
  }
}

/**
 * A token bucket of bytes per second shared by every body it paces. A chunk is handed on once the bucket
 * has paid for it; meanwhile the body is not read, so the socket's window closes and the upstream slows
 * down (backpressure). Chunks of all bodies take their turn in arrival order. The bucket holds at most a
 * twentieth of a second of bytes, so a pause is not followed by a burst above the rate.
 */
export class Pace {
  private tokens: number
  private last = Date.now()
  private turn: Promise<void> = Promise.resolve()
  private readonly capacity: number

  constructor(
    private readonly bytesPerSecond: number,
    private readonly onThrottled: (bytes: number) => void,
  ) {
    this.capacity = Math.max(16 * 1024, bytesPerSecond / 20)
    this.tokens = this.capacity
  }

  /** The body's chunks, each once the bucket paid for it. */
  async *paced<T extends Uint8Array>(body: AsyncIterable<T>): AsyncGenerator<T> {
    for await (const chunk of body) {
      await this.take(chunk.length)
      yield chunk
    }
  }

  private take(n: number): Promise<void> {
    const mine = this.turn.then(() => this.pay(n))
    this.turn = mine
    return mine
  }

  private async pay(n: number): Promise<void> {
    const now = Date.now()
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000)
    this.last = now
    this.tokens -= n
    if (this.tokens >= 0) return
    this.onThrottled(n)
    await new Promise((r) => setTimeout(r, (-this.tokens * 1000) / this.bytesPerSecond))
  }
}
