import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { Agent, type Dispatcher } from 'undici'
import type { Config } from '../config/schema.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { PEER_HEADER, signPeerRequest } from './peer-auth.js'
import { ownerOf } from './rendezvous.js'

/** Where peer requests go on a replica: the registry API under a prefix clients have no business with. */
export const PEER_PREFIX = '/_regmirror/peer'

/** How long a peer that failed is left out before it is tried again. */
const DOWN_FOR_MS = 10_000

/**
 * The replicas that share blobs (docs/configuration.md, "Replicas"): who they are (peer URLs, host
 * names re-resolved to one member per address), which one owns a digest, which are down, and the
 * signed requests to them. Every replica holds the same list and so computes the same owners.
 */
export class Peers {
  private members: string[]
  private readonly down = new Map<string, number>()
  /** This replica's own URL, spelled as the members are (`http://10.0.0.5:5000`). */
  readonly self: string
  private readonly agent: Agent
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.self = origin(config.cluster.self as string)
    this.members = [this.self]
    this.agent = new Agent({
      connect: { timeout: Math.min(config.timeouts.connect, 3000) },
      headersTimeout: config.timeouts.headers,
      bodyTimeout: config.timeouts.bodyIdle,
    })
  }

  /** Whether this replica has peers at all. */
  static enabled(config: Config): boolean {
    return config.cluster.peers.length > 0
  }

  /** Resolves the peers now, then again every resolveInterval. */
  async start(): Promise<void> {
    await this.resolve()
    this.timer = setInterval(() => void this.resolve(), this.config.cluster.resolveInterval)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.agent.close()
  }

  /** The peer that owns `digest`, when it is another replica and not known to be down; else undefined (fetch it here). */
  ownerOf(digest: string): string | undefined {
    const owner = ownerOf(digest, this.members)
    if (owner === undefined || owner === this.self) return undefined
    const until = this.down.get(owner)
    if (until !== undefined && until > Date.now()) return undefined
    return owner
  }

  /** A peer did not answer, or answered with a failure of its own: left out for a while. */
  markDown(peer: string, err: unknown): void {
    if (!this.down.has(peer) || (this.down.get(peer) ?? 0) < Date.now()) {
      this.log.warn(
        { peer, err: err instanceof Error ? err.message : String(err) },
        'peer failed; fetching its blobs from upstream for now',
      )
    }
    this.down.set(peer, Date.now() + DOWN_FOR_MS)
    this.updateGauge()
  }

  /** A signed GET of `pathAndQuery` (under the peer prefix) on `peer`. */
  request(peer: string, pathAndQuery: string, headers: Record<string, string> = {}): Promise<Dispatcher.ResponseData> {
    const path = `${PEER_PREFIX}${pathAndQuery}`
    return this.agent.request({
      origin: peer,
      path,
      method: 'GET',
      headers: { ...headers, [PEER_HEADER]: signPeerRequest(this.config.cluster.secret as string, path) },
    })
  }

  /** The members as resolved now (tests, logs). */
  list(): string[] {
    return [...this.members]
  }

  private async resolve(): Promise<void> {
    const found = new Set<string>([this.self])
    for (const url of this.config.cluster.peers) {
      const u = new URL(url)
      const host = u.hostname.replace(/^\[|\]$/g, '')
      if (isIP(host)) {
        found.add(origin(url))
        continue
      }
      try {
        for (const a of await lookup(host, { all: true }))
          found.add(origin(`${u.protocol}//${a.family === 6 ? `[${a.address}]` : a.address}:${port(u)}`))
      } catch (err) {
        // Keep what was known: a DNS hiccup must not make every replica its own owner.
        this.log.warn({ peer: url, err: (err as Error).message }, 'cannot resolve a peer host name; keeping the last members')
        for (const m of this.members) if (m.startsWith(`${u.protocol}//`)) found.add(m)
      }
    }
    const next = [...found].sort()
    if (next.join(' ') !== this.members.join(' ')) this.log.info({ members: next }, 'cluster members')
    this.members = next
    this.updateGauge()
  }

  private updateGauge(): void {
    const now = Date.now()
    const down = this.members.filter((m) => (this.down.get(m) ?? 0) > now).length
    this.metrics.clusterPeers.set({ state: 'up' }, this.members.length - down)
    this.metrics.clusterPeers.set({ state: 'down' }, down)
  }
}

/** `http://10.0.0.5:5000` for any spelling of a base URL: the members are compared as text. */
function origin(url: string): string {
  const u = new URL(url)
  return `${u.protocol}//${u.hostname}:${port(u)}`
}

function port(u: URL): string {
  return u.port || (u.protocol === 'https:' ? '443' : '80')
}
