import type { AddressInfo } from 'node:net'
import { createApp } from '../app.js'
import type { Config } from '../config/schema.js'
import type { ForwardStore } from '../kv.js'
import { KvClient } from './kv-client.js'
import { createLogger } from '../log.js'
import type { PrimaryApi, ReadyReport, WorkerApi } from './protocol.js'
import { RemoteIndex } from './remote-index.js'
import { parentPort, Rpc, type Handlers } from './rpc.js'
import { SharedFillsClient } from './shared-fills.js'

/** The environment variable that tells a forked process its slot (1…N): its logs' and metrics' `worker`. */
export const WORKER_SLOT_ENV = 'REGMIRROR_WORKER_SLOT'
/** Set by the primary for a worker it forks again after one died (the mirror is serving already). */
export const WORKER_RESTART_ENV = 'REGMIRROR_WORKER_RESTART'

/**
 * One worker process of `regmirror serve --workers N` (primary.ts forks it): the whole app on the
 * shared listeners, with the index, the downloads and the in-memory tag records and tokens of the
 * primary. Stops on SIGTERM from the primary (drains as a single process does); SIGINT from a
 * terminal reaches the primary too, which relays it as SIGTERM, so it is ignored here.
 */
export async function runWorker(config: Config): Promise<number> {
  const slot = Number(process.env[WORKER_SLOT_ENV] ?? '1')
  const log = createLogger(config.log.level).child({ worker: slot })
  // Answered once the app exists; the primary asks for metrics only after this worker said it listens.
  const handlers: Partial<Handlers<WorkerApi>> = {}
  const rpc = new Rpc<PrimaryApi, WorkerApi>(parentPort(), handlers)
  const kv: ForwardStore | undefined = config.metadata.redis ? undefined : new KvClient(rpc)
  const at = (a: AddressInfo | undefined) => a && { address: a.address, port: a.port, family: a.family }
  const app = await createApp(config, {
    logger: log,
    worker: {
      id: slot,
      index: new RemoteIndex(rpc, config.cache.maxSize),
      fills: new SharedFillsClient(rpc, log),
      kv,
      metrics: () => rpc.call('metrics', []),
      listenEarly: slot === 1 && process.env[WORKER_RESTART_ENV] !== '1',
      listening: (addrs) => rpc.notify('ready', { plain: at(addrs.plain), tls: at(addrs.tls) } as ReadyReport),
    },
  })
  handlers['metrics.json'] = () => app.services.metrics.registry.getMetricsAsJSON()
  process.on('SIGINT', () => {})
  // The primary gone (kill -9): nothing coordinates the cache any more. Stop at once, as the whole
  // mirror would have: what is left in tmp/ is cleared by the next start.
  process.once('disconnect', () => {
    log.error('the primary process is gone; stopping')
    process.exit(1)
  })
  await app.listen()
  await new Promise<void>((resolve) => {
    let stopping = false
    process.on('SIGTERM', () => {
      // Once is enough: a signal to the whole process group (docker stop, systemd) reaches this worker
      // and then the primary's relay; the primary kills what outlives the deadline.
      if (stopping) return
      stopping = true
      log.info({ deadlineMs: config.timeouts.shutdown }, 'worker shutting down: no new connections, finishing responses in flight')
      void app.shutdown(config.timeouts.shutdown).finally(resolve)
    })
  })
  rpc.close('this worker stopped')
  return 0
}
