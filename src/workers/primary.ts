import cluster, { type Worker } from 'node:cluster'
import type { Config } from '../config/schema.js'
import type { Logger } from '../log.js'
import type { PrimaryApi, ReadyReport, WorkerApi } from './protocol.js'
import { Rpc, type Port } from './rpc.js'
import { SharedState } from './shared-state.js'
import { WORKER_RESTART_ENV, WORKER_SLOT_ENV } from './worker.js'

// A worker that keeps crashing is restarted after a growing pause (0.5 s doubling to 30 s); a worker
// that ran for a minute counts as healthy again.
const RESTART_MIN_MS = 500
const RESTART_MAX_MS = 30_000
const HEALTHY_AFTER_MS = 60_000

/**
 * `regmirror serve` with `server.workers` > 1: this process serves nothing itself. It owns the shared
 * state (shared-state.ts), forks the workers, which all accept on the same listeners, restarts one that
 * dies, and on SIGTERM drains them all, flushes the index and exits 0. It logs the one "regmirror
 * listening" line once every worker listens.
 */
export async function runPrimary(config: Config, log: Logger): Promise<number> {
  const plog = log.child({ worker: 0 })
  // Round robin: the primary accepts and hands each connection to the next worker. Left to the
  // kernel (SCHED_NONE), the workers race for accept() and the busiest often wins again, so one
  // worker may take most connections while the others idle; registry clients open few long
  // keep-alive connections, which makes an even share of connections matter more than the
  // primary's cost of passing each one.
  cluster.schedulingPolicy = cluster.SCHED_RR
  cluster.setupPrimary({ serialization: 'advanced' })
  const state = await SharedState.open(config, plog)
  // Resolved: always a count (the machine's parallelism when not given).
  const n = config.server.workers ?? 1
  const slots = new Map<number, { worker: Worker; started: number; crashes: number }>()
  let stopping = false
  let announced = false
  const ready = new Set<number>()

  const fork = (slot: number, crashes: number) => {
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot), [WORKER_RESTART_ENV]: announced ? '1' : '0' })
    slots.set(slot, { worker, started: Date.now(), crashes })
    plog.info({ slot, pid: worker.process.pid }, 'worker started')
    worker.on('error', (err) => plog.debug({ slot, err: err.message }, 'channel to a worker failed'))
    const rpc = new Rpc<WorkerApi, PrimaryApi>(portOf(worker), state.handlers(worker.id))
    const link = { id: worker.id, rpc }
    state.add(link)
    state.listen(link)
    rpc.on('ready', (r) => {
      ready.add(slot)
      plog.debug({ slot, pid: worker.process.pid }, 'worker listening')
      if (!announced && ready.size === n) {
        announced = true
        announce(plog, config, r as ReadyReport, n)
      }
    })
    worker.once('exit', (code, signal) => {
      rpc.close()
      void state.gone(worker.id)
      if (stopping) return
      if (!announced) {
        // Before the mirror ever listened (an address in use, a key that does not load): the start failed, as a
        // single process's would, rather than a crash loop. The worker printed the reason.
        stopping = true
        plog.error({ slot, code, signal }, 'a worker failed to start; stopping')
        void drainAll(
          [...slots.values()].map((x) => x.worker),
          5000,
        ).then(() => process.stderr.write('', () => process.exit(1)))
        return
      }
      const s = slots.get(slot)
      const healthy = s !== undefined && Date.now() - s.started > HEALTHY_AFTER_MS
      const next = healthy ? 0 : crashes + 1
      const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.max(0, next - 1))
      plog.error({ slot, pid: worker.process.pid, code, signal, restartInMs: delay }, 'worker exited; its downloads failed, restarting it')
      setTimeout(() => {
        if (!stopping) fork(slot, next)
      }, delay).unref()
    })
  }

  for (let slot = 1; slot <= n; slot++) fork(slot, 0)
  await state.load()
  await untilStopped(plog, config, () => {
    stopping = true
    return [...slots.values()].map((s) => s.worker)
  })
  await state.flush()
  plog.info('every worker stopped')
  return 0
}

/** Resolves once SIGTERM or SIGINT came and every worker drained; a second signal kills them and exits now. */
function untilStopped(log: Logger, config: Config, stop: () => Worker[]): Promise<void> {
  return new Promise<void>((resolve) => {
    let workers: Worker[] | undefined
    const onSignal = (signal: string) => {
      if (workers) {
        for (const w of workers) w.process.kill('SIGKILL')
        process.exit(1)
      }
      workers = stop()
      log.info({ signal, deadlineMs: config.timeouts.shutdown, workers: workers.length }, 'shutting down: draining every worker')
      void drainAll(workers, config.timeouts.shutdown).then(resolve)
    }
    process.on('SIGTERM', () => onSignal('SIGTERM'))
    process.on('SIGINT', () => onSignal('SIGINT'))
  })
}

/** SIGTERM to each worker (each drains as a single process does); SIGKILL to any still running well after the deadline. */
async function drainAll(workers: Worker[], deadlineMs: number): Promise<void> {
  const exited = workers.map((w) => (w.isDead() ? Promise.resolve() : new Promise<void>((resolve) => w.once('exit', () => resolve()))))
  for (const w of workers) if (!w.isDead()) w.process.kill('SIGTERM')
  const timer = setTimeout(() => {
    for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL')
  }, deadlineMs + 10_000)
  await Promise.all(exited)
  clearTimeout(timer)
}

function announce(log: Logger, config: Config, r: ReadyReport, workers: number): void {
  const upstreams = config.upstreams.map((u) => u.name)
  const at = (a: ReadyReport['plain'] | undefined) => a && { address: a.address, port: a.port }
  log.info({ ...at(r.plain), tls: at(r.tls), dataDir: config.dataDir, upstreams, workers }, 'regmirror listening')
}

function portOf(worker: Worker): Port {
  return {
    // A worker that is exiting may close its channel between the check and the write: the message is lost
    // with it (its exit is handled), and the error must not reach the Worker as an unhandled 'error' event.
    send: (msg) => {
      if (worker.isConnected()) worker.send(msg as object, () => {})
    },
    onMessage: (fn) => {
      worker.on('message', fn)
      return () => worker.off('message', fn)
    },
  }
}
