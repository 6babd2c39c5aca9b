import { readFileSync } from 'node:fs'
import type { Fill } from '../cache/fill/fill.js'
import type { CacheIndex } from '../cache/lru-index.js'
import type { Config } from '../config/schema.js'
import type { Metrics } from '../metrics.js'
import type { BlobService } from '../proxy/blob-service.js'
import type { Pins, PinStatus } from '../proxy/pins.js'
import type { UpstreamClient } from '../upstream/client.js'
import type { Incident } from '../upstream/incidents.js'
import type { Pull, PullActivity, RepositoryPulls } from './activity.js'
import { trafficOf, type Traffic } from './traffic.js'

/** What `/api/status` answers and `/` shows: one snapshot of the mirror. */
export interface StatusSnapshot {
  version: string
  state: 'starting' | 'ready' | 'draining'
  /** ISO 8601. */
  now: string
  startedAt: string
  uptimeSeconds: number
  upstreams: UpstreamStatus[]
  cache: CacheStatus
  downloads: Download[]
  recentPulls: (Omit<Pull, 'at'> & { at: string })[]
  topRepositories: (Omit<RepositoryPulls, 'lastAt'> & { lastAt: string })[]
  pins: PinStatus[]
}

export interface UpstreamStatus {
  name: string
  /** Host of its URL: no path, no user information. */
  host: string
  online: boolean
  /** `offline: true` in the configuration: never contacted. */
  offlineByConfig: boolean
  /** The last `ratelimit-remaining` it sent (Docker Hub's pull quota), if any. */
  ratelimitRemaining: number | null
  lastError: (Omit<Incident, 'at'> & { at: string }) | null
}

export interface CacheStatus extends Traffic {
  usedBytes: number
  maxBytes: number
  pinnedBytes: number
  /** Blobs and manifests held. */
  entries: number
}

export interface Download {
  digest: string
  upstream: string | null
  repository: string | null
  /** null while the upstream has not said (no Content-Length yet). */
  size: number | null
  received: number
  bytesPerSecond: number
  /** Client requests reading it, or about to. */
  clients: number
  startedAt: string
}

/** Who is looking: the page shows only repositories they may pull. */
export type RepoFilter = (upstream: string, repository: string) => boolean

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
const TOP = 10
// A fill's rate is measured between two looks at least this far apart (the page refreshes every few seconds).
const RATE_WINDOW_MS = 1000

/** Builds the snapshot from the parts that know each piece; nothing here is kept but the fills' rate samples. */
export class StatusReport {
  private readonly startedAt = Date.now()
  private readonly samples = new WeakMap<Fill, { t: number; written: number; rate: number }>()

  constructor(
    private readonly parts: {
      config: Config
      metrics: Metrics
      index: CacheIndex
      blobs: BlobService
      pins: Pins
      upstream: UpstreamClient
      activity: PullActivity
      status: { ready: boolean; draining: boolean }
    },
  ) {}

  async snapshot(may: RepoFilter = () => true): Promise<StatusSnapshot> {
    const { index, pins, activity, status } = this.parts
    const now = Date.now()
    const iso = (t: number) => new Date(t).toISOString()
    return {
      version: VERSION,
      state: status.draining ? 'draining' : status.ready ? 'ready' : 'starting',
      now: iso(now),
      startedAt: iso(this.startedAt),
      uptimeSeconds: Math.floor((now - this.startedAt) / 1000),
      upstreams: await this.upstreams(),
      cache: {
        usedBytes: index.size,
        maxBytes: index.maxSize,
        pinnedBytes: index.pinnedBytes(),
        entries: index.count,
        ...(await trafficOf(this.parts.metrics)),
      },
      downloads: this.downloads(now, may),
      recentPulls: activity
        .recentPulls()
        .filter((p) => may(p.upstream, p.repository))
        .map((p) => ({ ...p, at: iso(p.at) })),
      topRepositories: activity
        .topRepositories(TOP * 10)
        .filter((r) => may(r.upstream, r.repository))
        .slice(0, TOP)
        .map((r) => ({ ...r, lastAt: iso(r.lastAt) })),
      pins: await pins.list(),
    }
  }

  private async upstreams(): Promise<UpstreamStatus[]> {
    const { config, metrics, upstream } = this.parts
    const limits = new Map((await metrics.rateLimitRemaining.get()).values.map((v) => [String(v.labels.upstream), v.value]))
    return config.upstreams.map((up) => {
      const incident = upstream.incidents.lastOf(up.name)
      return {
        name: up.name,
        host: new URL(up.url).host,
        online: !up.offline && !upstream.poolOf(up).offline,
        offlineByConfig: up.offline,
        ratelimitRemaining: limits.get(up.name) ?? null,
        lastError: incident ? { ...incident, at: new Date(incident.at).toISOString() } : null,
      }
    })
  }

  private downloads(now: number, may: RepoFilter): Download[] {
    const { blobs } = this.parts
    const out: Download[] = []
    for (const fill of blobs.activeFills()) {
      if (fill.state === 'done' || fill.state === 'failed') continue
      const about = blobs.subjectOf(fill)
      // A download with no repository (an import in this process) is the operator's own; shown to all who may see the page.
      if (about && !may(about.upstream, about.repository)) continue
      out.push({
        digest: fill.digest.value,
        upstream: about?.upstream ?? null,
        repository: about?.repository ?? null,
        size: fill.size ?? null,
        received: fill.written,
        bytesPerSecond: this.rateOf(fill, now),
        clients: fill.clients,
        startedAt: new Date(fill.startedAt).toISOString(),
      })
    }
    return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt))
  }

  /** Bytes per second: since the last look a second or more ago, or since the start on the first look. */
  private rateOf(fill: Fill, now: number): number {
    const last = this.samples.get(fill)
    if (last && now - last.t < RATE_WINDOW_MS) return last.rate
    const since = last ?? { t: fill.startedAt, written: 0 }
    const rate = now > since.t ? Math.round(((fill.written - since.written) * 1000) / (now - since.t)) : 0
    this.samples.set(fill, { t: now, written: fill.written, rate })
    return rate
  }
}
