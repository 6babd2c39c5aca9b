import type { Fills } from '../cache/fills.js'
import type { ContentLinks } from '../cache/links.js'
import type { CacheIndex } from '../cache/lru-index.js'
import { isPrivate } from '../config/registries.js'
import type { UpstreamConfig } from '../config/schema.js'
import type { Digest } from '../oci/reference.js'
import { notCachedOffline } from '../upstream/offline.js'
import { upstreamFailure, type UpstreamClient } from '../upstream/client.js'

/**
 * Private content stays private (docs/configuration.md, "Private content"): a digest the mirror
 * holds, or is downloading, is served through a private upstream only for a repository that
 * upstream confirmed holds it, and through a public upstream only if a public upstream brought or
 * confirmed it. Otherwise the upstream is asked (HEAD, with its credentials) and its answer is the
 * client's: 200 records the confirmation, anything else is answered as it came. The anchor is
 * zot's CVE-2024-39897, a blob deduplicated from a private repository read through another one.
 */
export class Visibility {
  constructor(
    private readonly links: ContentLinks,
    private readonly index: CacheIndex,
    private readonly fills: Fills,
    private readonly upstream: UpstreamClient,
  ) {}

  async check(up: UpstreamConfig, repo: string, d: Digest, kind: 'blob' | 'manifest'): Promise<void> {
    if (!this.links.enabled) return
    // Nothing local to leak: the services will fetch it through this upstream and repository.
    if (!this.index.has(d.value) && !(await this.fills.anywhere(d))) return
    const priv = isPrivate(up)
    if (priv ? await this.links.confirmed(up.name, repo, d) : !(await this.links.restricted(d))) return
    // Offline there is no one to confirm it: unknown here, as it would be if the upstream said no.
    if (up.offline) throw notCachedOffline(up, kind, repo, d.value)
    const res = await this.upstream.request(up, { method: 'HEAD', path: `/v2/${repo}/${kind}s/${d.value}`, repo })
    await res.body.dump().catch(() => {})
    if (res.status !== 200) throw await upstreamFailure(up, res, kind === 'blob' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN')
    await this.links.record(up.name, repo, d, priv)
  }
}
