import type { UpstreamConfig } from '../config/schema.js'
import type { FillBody, FillSource } from '../cache/fill/fill.js'
import { RegmirrorError } from '../errors.js'
import type { Digest } from '../oci/reference.js'
import { contentLength, header, upstreamFailure, type Endpoint, type UpstreamClient } from '../upstream/client.js'

/**
 * A blob's bytes from an upstream registry, as a fill reads them: a GET from the start, or from
 * where a broken download stopped (Range), holding a body without length to the size a HEAD
 * gives for the blob. The bytes come from any endpoint of the upstream's pool, fastest first (the
 * fill verifies the digest); a body that broke off sets its endpoint aside, so the resume goes on
 * at the byte reached from the next endpoint up.
 */
export class UpstreamBlobSource implements FillSource {
  /** The endpoint whose body the fill is reading. */
  private serving: Endpoint | undefined

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly up: UpstreamConfig,
    private readonly repo: string,
    private readonly digest: Digest,
  ) {}

  private get path(): string {
    return `/v2/${this.repo}/blobs/${this.digest.value}`
  }

  async open(offset: number): Promise<FillBody> {
    const { up } = this
    // Opened again: the body that was being read broke off (the fill opens only then).
    if (this.serving) this.upstream.bodyFailed(this.serving)
    this.serving = undefined
    const res = await this.upstream.request(up, {
      method: 'GET',
      path: this.path,
      repo: this.repo,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      byDigest: 'blob',
    })
    this.serving = res.endpoint
    const abort = () => res.body.destroy()
    // The upstream's `maxMbps`: the body is read no faster than its share of the link.
    const body = this.upstream.paced<Buffer>(up, res.body)
    if (offset === 0 && res.status === 200) {
      // A body without a length (chunked) is held to the size the registry gives for the blob.
      return { body, total: contentLength(res) ?? (await this.size()), abort }
    }
    if (offset > 0 && res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header(res.headers, 'content-range') ?? '')
      if (!m || Number(m[1]) !== offset) {
        abort()
        throw new RegmirrorError('UPSTREAM_ERROR', `${up.name} answered a resume with the wrong range`, { detail: { upstream: up.name } })
      }
      return { body, total: Number(m[3]), abort }
    }
    if (offset > 0 && res.status === 200) {
      // The upstream ignored Range: skip what we already have.
      return { body: skip(body, offset), total: contentLength(res), abort }
    }
    throw await upstreamFailure(up, res, 'BLOB_UNKNOWN')
  }

  /** The blob's size by a HEAD to the registry, or undefined when it will not say. */
  private async size(): Promise<number | undefined> {
    try {
      const res = await this.upstream.request(this.up, {
        method: 'HEAD',
        path: this.path,
        repo: this.repo,
        retry: false,
        byDigest: 'small',
      })
      await res.body.dump().catch(() => {})
      return res.status === 200 ? contentLength(res) : undefined
    } catch {
      return undefined
    }
  }
}

async function* skip(body: AsyncIterable<Buffer>, n: number): AsyncIterable<Buffer> {
  let left = n
  for await (const chunk of body) {
    if (left >= chunk.length) {
      left -= chunk.length
      continue
    }
    yield left > 0 ? chunk.subarray(left) : chunk
    left = 0
  }
}
