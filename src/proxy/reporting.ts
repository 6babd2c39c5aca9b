import { isRefusal, type RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { UpstreamIncidents } from '../upstream/incidents.js'

/**
 * The log lines and counters the services share, so a cache write error or a refused upstream
 * answer reads and counts the same wherever it happens.
 */
export class Reporter {
  constructor(
    private readonly metrics: Metrics,
    readonly log: Logger,
    /** Where an upstream's last failure is kept for the status page (answers refused, downloads broken off). */
    private readonly incidents?: UpstreamIncidents,
  ) {}

  /** The cache disk failed (full, read-only): the content is served anyway, without being kept. */
  writeError(err: NodeJS.ErrnoException, fields: Record<string, unknown>, message: string): void {
    this.metrics.cacheWriteErrors.inc({ code: err.code ?? 'unknown' })
    this.log.error({ ...fields, code: err.code, err: err.message }, message)
  }

  /** An upstream answer refused as wrong or unsafe (only refusals are counted; other errors pass). */
  refused(upstream: string, kind: 'manifest' | 'blob', err: unknown, fields: Record<string, unknown>): void {
    if (!isRefusal(err)) return
    this.incidents?.note(upstream, err)
    this.metrics.upstreamRefused.inc({ upstream, kind, cause: err.code.toLowerCase() })
    if (kind === 'manifest')
      this.log.error({ upstream, ...fields, code: err.code, err: err.message }, 'upstream manifest refused; nothing cached')
  }

  /** A blob download that failed: counted by cause, and logged with what it was. */
  fillFailed(upstream: string, err: RegmirrorError, fields: Record<string, unknown>): void {
    this.metrics.fillsFailed.inc({ cause: err.code.toLowerCase() })
    if (err.class === 'upstream') this.incidents?.note(upstream, err)
    if (err.code === 'DIGEST_MISMATCH') this.metrics.digestMismatches.inc({ kind: 'blob' })
    this.refused(upstream, 'blob', err, fields)
    this.log.error({ upstream, ...fields, code: err.code, err: err.message }, 'blob fill failed; nothing cached')
  }
}
