import { randomUUID } from 'node:crypto'
import type { Kv } from '../kv.js'
import type { Logger } from '../log.js'

/** How long a lease lives without renewal: a replica that died stops holding its digests after this. */
export const LEASE_TTL_MS = 30_000
/** Renewed this often while the fill runs: two renewals may fail (a Redis hiccup) before the lease lapses. */
const RENEW_EVERY_MS = LEASE_TTL_MS / 3

// Only the holder's own value renews or removes the lease: one that lapsed and was taken by another replica is
// left alone. (GET + compare + write in one script, so nothing can come between.)
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`

/**
 * What taking a digest's lease gave: `held` (this replica fills it from upstream), `holder` (another replica is
 * filling it: stream from there, then read the bucket), or `unavailable` (Redis failed: fill here, as a replica on
 * its own would; the bucket then receives the same verified object twice at worst).
 */
export type LeaseAnswer = { held: Lease } | { holder: string } | { unavailable: true }

/**
 * The fill lease (issue #17): replicas sharing a bucket and a Redis take a digest's fill one at a time, so each blob
 * is fetched from upstream once across the cluster. The lease is a Redis key `<prefix>:fill:<digest>` set with
 * NX and an expiry, renewed while the fill runs and removed when it ended; its value names the holder
 * (`cluster.self`), so the others stream from it. A holder that dies stops renewing, and after LEASE_TTL_MS the
 * next miss anywhere takes the lease.
 */
export class FillLeases {
  constructor(
    private readonly kv: Kv,
    private readonly prefix: string,
    /** This replica's base URL (`cluster.self`), as its peers reach it. */
    private readonly self: string,
    private readonly log: Logger,
    private readonly ttlMs = LEASE_TTL_MS,
  ) {}

  key(digest: string): string {
    return `${this.prefix}:fill:${digest}`
  }

  /** The digests whose lease this process holds: tells a lease of this replica's past life from a live one. */
  private readonly mine = new Set<string>()

  /** Takes `digest`'s lease, or says who holds it. */
  async take(digest: string): Promise<LeaseAnswer> {
    const key = this.key(digest)
    // Two tries: a lease may lapse (or be found stale) between the SET and the GET.
    for (let attempt = 0; attempt < 2; attempt++) {
      const value = `${this.self} ${randomUUID()}`
      const set = await this.kv.command(['SET', key, value, 'NX', 'PX', String(this.ttlMs)])
      if (set === 'OK') {
        this.mine.add(digest)
        return { held: new Lease(this.kv, key, value, this.ttlMs, this.log, () => this.mine.delete(digest)) }
      }
      if (set === undefined) return { unavailable: true }
      const current = await this.kv.command(['GET', key])
      if (current === undefined) return { unavailable: true }
      if (typeof current !== 'string') continue
      const holder = current.split(' ')[0] ?? ''
      if (holder !== this.self) return { holder }
      // Our own address but no fill of ours: a lease this replica held before it was restarted (kill -9).
      if (this.mine.has(digest)) return { holder }
      await this.kv.command(['EVAL', RELEASE, '1', key, current])
    }
    return { unavailable: true }
  }

  /** Whether some replica holds `digest`'s lease now (eviction leaves such objects alone). Unknown counts as yes. */
  async held(digest: string): Promise<boolean> {
    const n = await this.kv.command(['EXISTS', this.key(digest)])
    return n !== 0
  }
}

/** A lease this replica holds: renewed until release(). */
export class Lease {
  private readonly timer: NodeJS.Timeout
  private released = false

  constructor(
    private readonly kv: Kv,
    private readonly key: string,
    private readonly value: string,
    ttlMs: number,
    private readonly log: Logger,
    private readonly onRelease: () => void,
  ) {
    this.timer = setInterval(() => void this.renew(ttlMs), Math.min(RENEW_EVERY_MS, ttlMs / 3))
    this.timer.unref()
  }

  private async renew(ttlMs: number): Promise<void> {
    const r = await this.kv.command(['EVAL', RENEW, '1', this.key, this.value, String(ttlMs)])
    // Lapsed and maybe taken by another replica: the fill goes on (its bytes are verified either way), and at
    // worst the upstream serves this blob twice.
    if (r === 0 && !this.released)
      this.log.warn({ lease: this.key }, 'fill lease lapsed while the fill ran; another replica may fetch it too')
  }

  /** Ends the lease (the fill ended: committed to the bucket, or failed). Idempotent; never throws. */
  async release(): Promise<void> {
    if (this.released) return
    this.released = true
    clearInterval(this.timer)
    this.onRelease()
    await this.kv.command(['EVAL', RELEASE, '1', this.key, this.value])
  }
}
