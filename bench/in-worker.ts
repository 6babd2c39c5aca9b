/** Runs one function of client.ts in a worker thread, so its hashing and sockets never share the caller's event loop. */
import { Worker } from 'node:worker_threads'
import type * as client from './client.js'

export function inWorker<K extends keyof typeof client>(
  fn: K,
  ...args: Parameters<(typeof client)[K]>
): Promise<Awaited<ReturnType<(typeof client)[K]>>> {
  return new Promise((resolvePromise, reject) => {
    const w = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: { fn, args } })
    let settled = false
    w.once('message', (m: { ok: boolean; result?: unknown; error?: string }) => {
      settled = true
      if (m.ok) resolvePromise(m.result as Awaited<ReturnType<(typeof client)[K]>>)
      else reject(new Error(`${fn} failed in the worker:\n${m.error}`))
      void w.terminate()
    })
    w.once('error', (err) => {
      if (!settled) reject(err)
    })
    w.once('exit', (code) => {
      if (!settled) reject(new Error(`${fn}: worker exited with ${code}`))
    })
  })
}
