/** What `admit` decided: go ahead, go ahead as the probe of an offline upstream, or fail fast. */
export type Admission = { ok: true; probe?: number } | { ok: false }

/**
 * Per-endpoint offline marking (pool.ts keeps one for each endpoint of an upstream). After
 * `threshold` consecutive failures the endpoint is down for `coolDown` ms: it is skipped, and when
 * every endpoint of an upstream is, requests fail at once (the caller serves from cache) instead
 * of each waiting out a timeout. After the cool-down exactly one request is let through as a
 * probe; its success brings the endpoint back, its failure restarts the cool-down, and a probe
 * that ends without either (settleProbe) counts as a failure, so another probe follows.
 */
export class EndpointHealth {
  private failures = 0
  private offlineUntil = 0
  /** The probe in flight (a number that changes with every probe), or 0. */
  private probe = 0
  private probes = 0
  offline = false

  constructor(
    private readonly threshold: number,
    private readonly coolDown: number,
    private readonly onChange: (online: boolean) => void,
  ) {}

  /** Seconds until the next probe may go upstream (for a client's Retry-After). */
  retryAfterSeconds(now = Date.now()): number {
    return Math.max(1, Math.ceil((this.offlineUntil - now) / 1000))
  }

  /** Whether a request may go upstream now; the one let through while offline is the probe. */
  admit(now = Date.now()): Admission {
    if (!this.offline) return { ok: true }
    if (now < this.offlineUntil || this.probe !== 0) return { ok: false }
    this.probe = ++this.probes
    return { ok: true, probe: this.probe }
  }

  /**
   * A success. Given the request's admission, one admitted before the endpoint was set aside does
   * not bring it back (an endpoint that breaks bodies off still answers headers): only its probe does.
   */
  success(admission?: Admission): void {
    if (this.offline && admission !== undefined && !(admission.ok && admission.probe !== undefined && admission.probe === this.probe))
      return
    this.failures = 0
    this.probe = 0
    if (this.offline) {
      this.offline = false
      this.onChange(true)
    }
  }

  /** A failure; `threshold` overrides the configured one (a pool sets an endpoint aside at once while another is up). */
  failure(now = Date.now(), threshold = this.threshold): void {
    this.failures++
    this.probe = 0
    if (this.offline) {
      this.offlineUntil = now + this.coolDown
      return
    }
    if (threshold > 0 && this.failures >= threshold) {
      this.offline = true
      this.offlineUntil = now + this.coolDown
      this.onChange(false)
    }
  }

  /** The probe request has ended: if nothing recorded its outcome, it failed. */
  settleProbe(admission: Admission, now = Date.now()): void {
    if (admission.ok && admission.probe !== undefined && admission.probe === this.probe) this.failure(now)
  }
}
