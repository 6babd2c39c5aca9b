/**
 * Worker-thread entry: runs one function of client.ts and posts its result. The main thread keeps the counting
 * proxies (and the servers' log pipes) on its own event loop; the clients' hashing and sockets live here.
 */
import { parentPort, workerData } from 'node:worker_threads'
import * as client from './client.js'

type Fn = (...args: never[]) => Promise<unknown>

const { fn, args } = workerData as { fn: keyof typeof client; args: unknown[] }
const f = client[fn] as unknown as Fn
f(...(args as never[])).then(
  (result) => parentPort?.postMessage({ ok: true, result }),
  (err: unknown) => parentPort?.postMessage({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
)
