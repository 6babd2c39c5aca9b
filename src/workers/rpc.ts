import { ERRORS, RegmirrorError, type ErrorCode } from '../errors.js'

/**
 * One end of an IPC channel: a cluster worker seen from the primary (`worker.send`, 'message'),
 * or the primary seen from a worker (`process.send`, 'message'). Other users of the same channel
 * (node:cluster's own messages) are ignored: ours carry `rm`.
 */
export interface Port {
  send(msg: unknown): void
  onMessage(fn: (msg: unknown) => void): () => void
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the handlers' own types are checked where they are declared
type Fn = (...args: any[]) => unknown
export type Api = Record<string, Fn>
/** What answers an Api: each method as declared, or a promise of its result. */
export type Handlers<A extends Api> = { [K in keyof A]: (...args: Parameters<A[K]>) => ReturnType<A[K]> | Promise<ReturnType<A[K]>> }

type Req = { rm: 'req'; id: number; method: string; args: unknown[] }
type Res = { rm: 'res'; id: number; value?: unknown; error?: { code: string; message: string } }
type Ev = { rm: 'ev'; name: string; data: unknown }
type Msg = Req | Res | Ev

const DEFAULT_TIMEOUT_MS = 30_000

/**
 * A small typed request/response over a Port: `call` sends a request with an id and waits for the
 * answer (or its timeout, or the channel's end); `notify` sends a one-way event. `Remote` is the
 * other end's handlers, `Local` this end's. Errors cross as {code, message}: a RegmirrorError's code
 * is kept (its detail is not: it may hold what only the process that made it should see).
 */
export class Rpc<Remote extends Api, Local extends Api = Api> {
  private nextId = 1
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void; timer?: NodeJS.Timeout }>()
  private readonly listeners = new Map<string, Set<(data: unknown) => void>>()
  private readonly stopListening: () => void
  private closed: Error | undefined

  constructor(
    private readonly port: Port,
    private readonly handlers: Partial<Handlers<Local>> = {},
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {
    this.stopListening = port.onMessage((m) => this.receive(m))
  }

  /** `timeoutMs: 0`: no deadline (the answer waits for something outside, e.g. another worker's download). */
  call<K extends keyof Remote & string>(
    method: K,
    args: Parameters<Remote[K]>,
    opts: { timeoutMs?: number } = {},
  ): Promise<Awaited<ReturnType<Remote[K]>>> {
    if (this.closed) return Promise.reject(this.closed)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timeout = opts.timeoutMs ?? this.timeoutMs
      const entry: { resolve(v: unknown): void; reject(e: unknown): void; timer?: NodeJS.Timeout } = {
        resolve: resolve as (v: unknown) => void,
        reject,
      }
      if (timeout > 0) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id)
          reject(new RegmirrorError('INTERNAL', `no answer to ${method} from the other process within ${timeout} ms`))
        }, timeout)
      }
      this.pending.set(id, entry)
      try {
        this.port.send({ rm: 'req', id, method, args } satisfies Req)
      } catch (err) {
        this.settle(id, undefined, err)
      }
    })
  }

  notify(name: string, data: unknown): void {
    if (this.closed) return
    try {
      this.port.send({ rm: 'ev', name, data } satisfies Ev)
    } catch {
      // The other end is gone; close() follows from its exit.
    }
  }

  on(name: string, fn: (data: unknown) => void): () => void {
    let set = this.listeners.get(name)
    if (!set) this.listeners.set(name, (set = new Set()))
    set.add(fn)
    return () => set.delete(fn)
  }

  /** The other end is gone: every call still waiting fails, later ones fail at once. */
  close(reason = 'the other process exited'): void {
    if (this.closed) return
    this.closed = new RegmirrorError('UNAVAILABLE', reason)
    this.stopListening()
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, this.closed)
  }

  get pendingCalls(): number {
    return this.pending.size
  }

  private receive(raw: unknown): void {
    if (typeof raw !== 'object' || raw === null || !('rm' in raw)) return
    const m = raw as Msg
    if (m.rm === 'res') {
      this.settle(m.id, m.value, m.error && errorFrom(m.error))
    } else if (m.rm === 'ev') {
      for (const fn of this.listeners.get(m.name) ?? []) fn(m.data)
    } else if (m.rm === 'req') void this.answer(m)
  }

  private async answer(m: Req): Promise<void> {
    const handler = this.handlers[m.method] as Fn | undefined
    let res: Res
    try {
      if (!handler) throw new RegmirrorError('INTERNAL', `no handler for ${m.method}`)
      res = { rm: 'res', id: m.id, value: await handler(...m.args) }
    } catch (err) {
      res = { rm: 'res', id: m.id, error: wireError(err) }
    }
    if (this.closed) return
    try {
      this.port.send(res)
    } catch {
      // The asker is gone.
    }
  }

  private settle(id: number, value: unknown, error: unknown): void {
    const p = this.pending.get(id)
    if (!p) return
    this.pending.delete(id)
    clearTimeout(p.timer)
    if (error) p.reject(error)
    else p.resolve(value)
  }
}

function wireError(err: unknown): { code: string; message: string } {
  if (err instanceof RegmirrorError) return { code: err.code, message: err.message }
  return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) }
}

function errorFrom(e: { code: string; message: string }): RegmirrorError {
  return new RegmirrorError(e.code in ERRORS ? (e.code as ErrorCode) : 'INTERNAL', e.message)
}

/** The Port of this worker's channel to the primary. */
export function parentPort(): Port {
  return {
    send: (msg) => {
      if (!process.send) throw new Error('not a worker process')
      process.send(msg)
    },
    onMessage: (fn) => {
      process.on('message', fn)
      return () => process.off('message', fn)
    },
  }
}
