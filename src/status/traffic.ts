import type { Metrics } from '../metrics.js'

/** What the cache did for clients since the process started, read from the counters /metrics exports. */
export interface Traffic {
  /** Manifest and blob requests answered from the cache (`hit`, and `stale`: the upstream failed). */
  hits: number
  /** ... that had to ask an upstream (a client that joined a download in progress included). */
  misses: number
  /** hits / (hits + misses); null before the first request. */
  hitRatio: number | null
  /** Bytes sent to clients from the cache's disk. */
  servedFromCacheBytes: number
  /** Bytes sent to clients as they arrived from an upstream (a download in progress). */
  servedFromUpstreamBytes: number
  /** Body bytes received from upstreams (manifests, tag lists and tokens included). */
  fetchedBytes: number
  /** Bytes clients got that no upstream sent for them: all served minus all fetched, never below 0. */
  savedBytes: number
}

/** The counters of `metrics`, summed over their labels into the page's figures. */
export async function trafficOf(metrics: Metrics): Promise<Traffic> {
  const requests = (await metrics.requests.get()).values
  const count = (results: string[]) => requests.filter((v) => results.includes(String(v.labels.result))).reduce((n, v) => n + v.value, 0)
  const served = (await metrics.servedBytes.get()).values
  const bySource = (source: string) => served.filter((v) => v.labels.source === source).reduce((n, v) => n + v.value, 0)
  const fetchedBytes = (await metrics.upstreamBytes.get()).values.reduce((n, v) => n + v.value, 0)
  const hits = count(['hit', 'stale'])
  const misses = count(['miss'])
  const servedFromCacheBytes = bySource('cache')
  const servedFromUpstreamBytes = bySource('upstream')
  return {
    hits,
    misses,
    hitRatio: hits + misses === 0 ? null : hits / (hits + misses),
    servedFromCacheBytes,
    servedFromUpstreamBytes,
    fetchedBytes,
    savedBytes: Math.max(0, servedFromCacheBytes + servedFromUpstreamBytes - fetchedBytes),
  }
}
