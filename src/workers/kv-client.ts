import { LRUCache } from 'lru-cache'
import type { ForwardStore } from '../kv.js'
import type { PrimaryApi, WorkerApi } from './protocol.js'
import type { Rpc } from './rpc.js'

/** Records a worker keeps near: tags asked for again and again cost no round trip to the primary. */
const NEAR_ENTRIES = 10_000

/**
 * A worker's side of the primary's in-memory kv (tag records and tokens). Reads are kept in a small
 * local copy, which the primary's `kv.changed` event clears for a key another worker wrote or
 * deleted (`''`: everything). The channel is ordered, so a read answered before another worker's
 * write is followed by that write's event: a copy lags the primary by one message at most, as the
 * index's copy does. Records are never mutated (callers replace them), so a copy is safe to share.
 */
export class KvClient implements ForwardStore {
  private readonly near = new LRUCache<string, { value: unknown }>({ max: NEAR_ENTRIES })

  constructor(private readonly rpc: Rpc<PrimaryApi, WorkerApi>) {
    rpc.on('kv.changed', (key) => {
      if (key === '') this.near.clear()
      else this.near.delete(key as string)
    })
  }

  async get(key: string): Promise<unknown> {
    const near = this.near.get(key)
    if (near) return near.value
    const value = await this.rpc.call('kv.get', [key])
    if (value !== undefined) this.near.set(key, { value })
    return value
  }

  async set(key: string, value: unknown, ttl?: number): Promise<unknown> {
    this.near.set(key, { value })
    return this.rpc.call('kv.set', [key, value, ttl])
  }

  async delete(key: string): Promise<boolean> {
    this.near.delete(key)
    return this.rpc.call('kv.delete', [key])
  }

  async clear(): Promise<void> {
    this.near.clear()
    await this.rpc.call('kv.clear', [])
  }
}
