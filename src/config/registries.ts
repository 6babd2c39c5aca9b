import { endpointsOf } from './endpoints.js'
import { repoAllowed, type Config, type UpstreamConfig } from './schema.js'
import { RegmirrorError } from '../errors.js'

/**
 * Which upstream a request means, and what that upstream allows. Only configured upstreams
 * can ever be reached: nothing in a request (ns, path prefix, Host) can name an arbitrary host.
 */
export class Registries {
  private readonly byKey = new Map<string, UpstreamConfig>()
  private readonly byHostHeader = new Map<string, UpstreamConfig>()
  readonly defaultUpstream: UpstreamConfig
  readonly all: UpstreamConfig[]

  constructor(config: Config) {
    this.all = config.upstreams
    for (const up of config.upstreams) {
      this.byKey.set(up.name.toLowerCase(), up)
      for (const h of up.hosts) this.byHostHeader.set(h.toLowerCase(), up)
    }
    // Registry hosts are also accepted for their upstream (`?ns=registry-1.docker.io`), unless
    // a configured name already claims that host. A mirror that serves several registries under
    // name prefixes (`https://m.daocloud.io/docker.io`) is not one registry's host.
    for (const up of config.upstreams) {
      for (const ep of endpointsOf(up)) {
        if (ep.prefix !== '') continue
        const host = new URL(ep.url).host.toLowerCase()
        if (!this.byKey.has(host)) this.byKey.set(host, up)
      }
    }
    const def = this.byKey.get(config.defaultUpstream.toLowerCase())
    if (!def) throw new RegmirrorError('INTERNAL', `default upstream ${config.defaultUpstream} is not configured`)
    this.defaultUpstream = def
  }

  /** An upstream by its name (or registry host), as given by `?ns=` or a path prefix. */
  byName(name: string): UpstreamConfig | undefined {
    return this.byKey.get(name.toLowerCase())
  }

  /** An upstream mapped to a Host header (`ghcr.mirror.example.com`); with or without the port. */
  byHost(host: string | undefined): UpstreamConfig | undefined {
    if (!host) return undefined
    const h = host.toLowerCase()
    return this.byHostHeader.get(h) ?? this.byHostHeader.get(h.replace(/:\d+$/, ''))
  }

  /** Docker Hub's rule: a one-component name is an official image under `library/`. */
  normalizeRepo(up: UpstreamConfig, repo: string): string {
    return up.libraryPrefix && !repo.includes('/') ? `library/${repo}` : repo
  }

  assertAllowed(up: UpstreamConfig, repo: string): void {
    if (!repoAllowed(up, repo)) {
      throw new RegmirrorError('DENIED', `repository ${repo} is not allowed on ${up.name} by this mirror's policy`, {
        detail: { upstream: up.name, repository: repo },
      })
    }
  }
}

/** Whether content fetched through `up` is its own (docs/configuration.md, "Private content"): `private`, else whether it has credentials. */
export function isPrivate(up: UpstreamConfig): boolean {
  return up.private ?? (up.credentials !== undefined || (up.endpoints ?? []).some((e) => e.credentials !== undefined))
}
