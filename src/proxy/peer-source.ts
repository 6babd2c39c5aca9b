import type { FillBody, FillSource } from '../cache/fill/fill.js'
import type { Peers } from '../cluster/peers.js'
import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { Digest } from '../oci/reference.js'

/**
 * A blob from the replica that owns its digest, which fills it from upstream once for the whole
 * cluster. The owner holds back its last byte until it verified the blob, and the fill reading this
 * source verifies it again. When the owner cannot be reached or fails (5xx), it is marked down and
 * the bytes come from `fallback` (the upstream) instead; since a broken transfer is resumed through
 * open(offset), an owner that dies in the middle of a blob is replaced at the byte reached.
 */
export class PeerBlobSource implements FillSource {
  private usePeer = true

  constructor(
    private readonly peers: Peers,
    private readonly owner: string,
    private readonly up: UpstreamConfig,
    private readonly repo: string,
    private readonly digest: Digest,
    private readonly fallback: FillSource,
    private readonly metrics: Metrics,
  ) {}

  async open(offset: number): Promise<FillBody> {
    if (this.usePeer) {
      try {
        return await this.fromPeer(offset)
      } catch (err) {
        if (err instanceof RegmirrorError && err.class === 'client') throw err
        this.usePeer = false
        this.peers.markDown(this.owner, err)
        this.metrics.peerFetches.inc({ result: 'fallback' })
      }
    }
    return this.fallback.open(offset)
  }

  private async fromPeer(offset: number): Promise<FillBody> {
    const query = new URLSearchParams({ ns: this.up.name })
    const res = await this.peers.request(this.owner, `/v2/${this.repo}/blobs/${this.digest.value}?${query}`, {
      ...(offset > 0 ? { range: `bytes=${offset}-` } : {}),
    })
    const abort = () => res.body.destroy()
    const header = (name: string) => {
      const v = res.headers[name]
      return Array.isArray(v) ? v[0] : v
    }
    if (offset === 0 && res.statusCode === 200) {
      this.metrics.peerFetches.inc({ result: 'ok' })
      const length = Number(header('content-length'))
      return { body: res.body, total: Number.isSafeInteger(length) ? length : undefined, abort }
    }
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header('content-range') ?? '')
    if (offset > 0 && res.statusCode === 206 && range && Number(range[1]) === offset) {
      return { body: res.body, total: Number(range[3]), abort }
    }
    const text = (await res.body.text().catch(() => '')).slice(0, 300)
    // The owner asked the upstream, which does not have it: so is the answer here, no second ask.
    if (res.statusCode === 404)
      throw new RegmirrorError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest: this.digest.value } })
    throw new Error(`peer ${this.owner} answered ${res.statusCode}: ${text}`)
  }
}
