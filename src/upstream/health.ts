/**
 * Per-upstream offline marking. After `threshold` consecutive failures the upstream is
 * offline for `coolDown` ms: requests fail at once (the caller serves from cache) instead of
 * each waiting out a timeout. After the cool-down exactly one request is let through as a
 * probe; its success brings the upstream back, its failure restarts the cool-down.
 */
export class UpstreamHealth {
  private failures = 0
  private offlineUntil = 0
  private probing = false
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

  /** Whether a request may go upstream now. */
  admit(now = Date.now()): boolean {
    if (!this.offline) return true
    if (now < this.offlineUntil || this.probing) return false
    this.probing = true
    return true
  }

  success(): void {
    this.failures = 0
    this.probing = false
    if (this.offline) {
      this.offline = false
      this.onChange(true)
    }
  }

  failure(now = Date.now()): void {
    this.failures++
    this.probing = false
    if (this.offline) {
      this.offlineUntil = now + this.coolDown
      return
    }
    if (this.threshold > 0 && this.failures >= this.threshold) {
      this.offline = true
      this.offlineUntil = now + this.coolDown
      this.onChange(false)
    }
  }
}
