import { endpointsOf, type ResolvedEndpoint } from '../config/endpoints.js'
import type { UpstreamConfig } from '../config/schema.js'
import { EndpointHealth, type Admission } from './health.js'

/** Weight of the newest measurement in the running averages. */
const EWMA = 0.3
/** The transfer a "fastest" ranking is about: latency matters for manifests, throughput for layers. */
const REFERENCE_BYTES = 1024 * 1024
/** Bodies shorter than this say more about latency than about throughput. */
export const MIN_THROUGHPUT_SAMPLE = 256 * 1024

/** One place an upstream registry is reached: its configuration, its health and what was measured of it. */
export class Endpoint {
  readonly up: UpstreamConfig
  readonly config: ResolvedEndpoint
  readonly health: EndpointHealth
  /** Tokens and cached challenges are kept per endpoint: each has its own credentials. */
  readonly key: string
  /** Its own origin: dialled as configured, and the only one its credentials are sent to. */
  readonly origin: string
  /** Seconds to response headers, averaged. */
  latency: number | undefined
  /** Body bytes per second, averaged over bodies long enough to say. */
  throughput: number | undefined

  constructor(up: UpstreamConfig, config: ResolvedEndpoint, health: EndpointHealth) {
    this.up = up
    this.config = config
    this.health = health
    this.key = `${up.name}\u0000${config.label}`
    this.origin = new URL(config.url).origin
  }

  get label(): string {
    return this.config.label
  }

  noteLatency(seconds: number): void {
    this.latency = this.latency === undefined ? seconds : this.latency + EWMA * (seconds - this.latency)
  }

  noteThroughput(bytes: number, seconds: number): void {
    if (bytes < MIN_THROUGHPUT_SAMPLE || seconds <= 0) return
    const rate = bytes / seconds
    this.throughput = this.throughput === undefined ? rate : this.throughput + EWMA * (rate - this.throughput)
  }
}

export interface PoolOptions {
  /** offline.failureThreshold: what the last endpoint up is held to, as a single-endpoint upstream always was. */
  threshold: number
  coolDown: number
  onEndpoint(ep: Endpoint, online: boolean): void
  onUpstream(online: boolean): void
}

/**
 * The endpoints of one upstream and the choice between them. Answers a digest verifies (blobs,
 * manifests by digest) come from any endpoint, fastest first (small ones try the endpoints not yet
 * measured first: that is how a fast endpoint listed late is found); everything else (tags, tag lists,
 * referrers) from the most trusted endpoint that answers, the `trusted: false` ones last. An endpoint
 * that fails while another is up is set aside at once for the cool-down, then probed back (health.ts);
 * the last one up is held to the configured threshold, and the upstream is offline only when every
 * endpoint is down.
 */
export class EndpointPool {
  readonly endpoints: readonly Endpoint[]
  private online = true

  constructor(
    up: UpstreamConfig,
    private readonly opts: PoolOptions,
  ) {
    this.endpoints = endpointsOf(up).map((config) => {
      const ep: Endpoint = new Endpoint(up, config, new EndpointHealth(opts.threshold, opts.coolDown, (online) => this.changed(ep, online)))
      return ep
    })
  }

  get size(): number {
    return this.endpoints.length
  }

  /** Every endpoint is down (some may be due for a probe). */
  get offline(): boolean {
    return this.endpoints.every((e) => e.health.offline)
  }

  /** Seconds until the first endpoint may be probed: a client's Retry-After when all are down. */
  retryAfterSeconds(now = Date.now()): number {
    return Math.min(...this.endpoints.map((e) => e.health.retryAfterSeconds(now)))
  }

  /**
   * The endpoints in the order to ask them; whether each may be asked now is its health's `admit`.
   * `trust`: trusted ones in the listed order, then the `trusted: false` ones. `fastest`: by measured
   * latency and throughput. `explore`, for small requests (a manifest by digest, a HEAD): the same,
   * but endpoints never measured first, so each gets a latency that later rankings can use.
   */
  order(kind: 'trust' | 'fastest' | 'explore'): Endpoint[] {
    if (kind === 'trust') return [...this.endpoints.filter((e) => e.config.trusted), ...this.endpoints.filter((e) => !e.config.trusted)]
    // What is not measured yet counts as good as the best measured endpoint up: the operator's order breaks the tie.
    const up = this.endpoints.filter((e) => !e.health.offline)
    const latencies = up.flatMap((e) => (e.latency === undefined ? [] : [e.latency]))
    const rates = up.flatMap((e) => (e.throughput === undefined ? [] : [e.throughput]))
    const bestLatency = latencies.length > 0 ? Math.min(...latencies) : 0
    const bestRate = rates.length > 0 ? Math.max(...rates) : undefined
    const score = (e: Endpoint): number => {
      if (kind === 'explore' && e.latency === undefined) return -1
      const rate = e.throughput ?? bestRate
      return (e.latency ?? bestLatency) + (rate === undefined ? 0 : REFERENCE_BYTES / rate)
    }
    // Array.prototype.sort is stable: equal scores keep the listed order.
    return [...this.endpoints].sort((a, b) => score(a) - score(b))
  }

  success(ep: Endpoint, admission?: Admission): void {
    ep.health.success(admission)
  }

  failure(ep: Endpoint, now = Date.now()): void {
    ep.health.failure(now, this.otherUp(ep) ? 1 : undefined)
  }

  /**
   * A body that broke off: the fill resumes on another endpoint if one is up. With no other, the
   * endpoint is not blamed: resuming on it is all there is, and the fill counts its own attempts.
   */
  bodyFailed(ep: Endpoint, now = Date.now()): void {
    if (this.otherUp(ep)) ep.health.failure(now, 1)
  }

  private otherUp(ep: Endpoint): boolean {
    return this.endpoints.some((e) => e !== ep && !e.health.offline)
  }

  private changed(ep: Endpoint, online: boolean): void {
    this.opts.onEndpoint(ep, online)
    const now = !this.offline
    if (now !== this.online) {
      this.online = now
      this.opts.onUpstream(now)
    }
  }
}
