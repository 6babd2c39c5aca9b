import type { UpstreamConfig } from '../config/schema.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { header, type Headers } from './answers.js'
import { Gate, Pace } from './limits.js'
import type { Endpoint } from './pool.js'
import { QuotaBook, credentialsOf, parseRateLimit, type Credential } from './quota.js'

/**
 * What each upstream may use, kept for the client (client.ts): its gate (`maxConcurrent`,
 * `maxRequestsPerSecond`, `maxQueueWait`), its bandwidth pace (`maxMbps`), and the pull quota of
 * every endpoint's credentials, from which the account to ask with is picked.
 */
export class Allowances {
  private readonly quota = new QuotaBook()
  /** Per endpoint: its credentials as the quota book keeps them. */
  private readonly credentials = new Map<string, Credential[]>()
  private readonly gates = new Map<string, Gate>()
  private readonly paces = new Map<string, Pace>()

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  gateOf(up: UpstreamConfig): Gate {
    let gate = this.gates.get(up.name)
    if (!gate) {
      const labels = { upstream: up.name }
      gate = new Gate(up.name, up.maxConcurrent, up.maxRequestsPerSecond, up.maxQueueWait, {
        waited: (ms, admitted) => {
          this.metrics.upstreamQueueWait.observe({ ...labels, outcome: admitted ? 'admitted' : 'timeout' }, ms / 1000)
          if (!admitted) this.log.warn({ upstream: up.name, waitedMs: ms }, 'no turn to ask the upstream within maxQueueWait')
        },
        queueLength: (n) => this.metrics.upstreamQueueLength.set(labels, n),
      })
      this.gates.set(up.name, gate)
    }
    return gate
  }

  paced<T extends Uint8Array>(up: UpstreamConfig, body: AsyncIterable<T>): AsyncIterable<T> {
    if (up.maxMbps <= 0) return body
    let pace = this.paces.get(up.name)
    if (!pace) {
      pace = new Pace((up.maxMbps * 1e6) / 8, (n) => this.metrics.upstreamThrottledBytes.inc({ upstream: up.name }, n))
      this.paces.set(up.name, pace)
    }
    return pace.paced(body)
  }

  credentialsOf(ep: Endpoint): Credential[] {
    let list = this.credentials.get(ep.key)
    if (!list) {
      list = credentialsOf(ep.origin, ep.config.credentials)
      this.credentials.set(ep.key, list)
    }
    return list
  }

  /** The credential with the most quota left (quota.ts). */
  pick(creds: Credential[]): Credential {
    return this.quota.pick(creds)
  }

  quotaLow(up: UpstreamConfig, endpoints: readonly Endpoint[]): boolean {
    return this.quota.low(
      endpoints.flatMap((ep) => this.credentialsOf(ep)),
      up.quotaReserve,
    )
  }

  /** Docker Hub's `ratelimit-remaining: 76;w=21600`: what this credential has left for the window. */
  noteRateLimit(ep: Endpoint, cred: Credential, headers: Headers, endpoints: readonly Endpoint[]): void {
    const rl = parseRateLimit(header(headers, 'ratelimit-remaining'))
    if (rl === undefined) return
    const up = ep.up
    this.quota.note(cred, rl.remaining, rl.windowMs)
    this.metrics.quotaRemaining.set({ upstream: up.name, credential: cred.label }, rl.remaining)
    const all = endpoints.flatMap((e) => this.credentialsOf(e))
    this.metrics.rateLimitRemaining.set({ upstream: up.name }, this.quota.best(all) ?? rl.remaining)
    this.log.debug(
      {
        upstream: up.name,
        endpoint: ep.label,
        credential: cred.label,
        ratelimitRemaining: rl.remaining,
        ratelimitLimit: header(headers, 'ratelimit-limit'),
      },
      'upstream rate limit',
    )
  }
}
