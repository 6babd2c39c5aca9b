import { LRUCache } from 'lru-cache'
import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError, isRegmirrorError } from '../errors.js'
import type { Metrics } from '../metrics.js'

/** Bound of the remembered 404s; the oldest go first. A storm of distinct bad references cannot grow it. */
const MAX_ENTRIES = 10_000

/**
 * 404s of an upstream for a tag or a manifest by digest, remembered for the upstream's `negativeTtl`: a storm of
 * requests for a reference that does not exist (a CI job's typo, a deleted tag) reaches the upstream once. Keyed
 * by upstream, repository and reference, so no other upstream or repository is ever answered from it. Anything
 * that finds the reference (a pull, preload or import that gets it) forgets the entry: a 404 never hides content
 * the mirror holds, since the services look in the cache before they look here.
 */
export class NegativeCache {
  private readonly entries = new LRUCache<string, true>({ max: MAX_ENTRIES })

  constructor(private readonly metrics: Metrics) {}

  /** The 404 to answer, if the upstream said so within its `negativeTtl`. */
  check(up: UpstreamConfig, repo: string, ref: string): RegmirrorError | undefined {
    if (up.negativeTtl <= 0 || !this.entries.get(key(up.name, repo, ref))) return undefined
    this.metrics.negativeHits.inc({ upstream: up.name })
    return new RegmirrorError('MANIFEST_UNKNOWN', `not found on ${up.name} (remembered for negativeTtl)`, {
      detail: { upstream: up.name, status: 404 },
    })
  }

  remember(up: UpstreamConfig, repo: string, ref: string): void {
    if (up.negativeTtl > 0) this.entries.set(key(up.name, repo, ref), true, { ttl: up.negativeTtl })
  }

  forget(upstream: string, repo: string, ref: string): void {
    this.entries.delete(key(upstream, repo, ref))
  }
}

function key(upstream: string, repo: string, ref: string): string {
  return `${upstream}\u0000${repo}\u0000${ref}`
}

/** Whether the upstream answered 404 for a manifest (not the mirror's own MANIFEST_UNKNOWN, which has no status). */
export function isUpstreamNotFound(err: unknown): boolean {
  return isRegmirrorError(err, 'MANIFEST_UNKNOWN') && (err.detail as { status?: unknown } | undefined)?.status === 404
}
