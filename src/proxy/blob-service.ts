import { unlink } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { Config, UpstreamConfig } from '../config/schema.js'
import type { BlobStore } from '../cache/blob-store.js'
import { Fill, type FillBody } from '../cache/fill.js'
import type { LruIndex } from '../cache/lru-index.js'
import { REFUSALS, RegmirrorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import type { Digest } from '../oci/reference.js'
import { header, type UpstreamClient, type UpstreamResponse } from '../upstream/client.js'
import { upstreamFailure } from './upstream-errors.js'

export interface BlobHandle {
  /** Undefined only when an upstream streams a blob without announcing its size. */
  size: number | undefined
  source: 'cache' | 'fill'
  /** Whether this request joined a fill another request started. */
  joined: boolean
  /** Bytes [start, end], inclusive. */
  open(start: number, end: number): Readable
  /** Call once the response is over, so the blob may be evicted again. */
  release(): void
}

/**
 * Blobs by digest: a disk hit is served from the file; a miss joins the digest's fill, or
 * starts it. There is never more than one fill per digest in the process.
 */
export class BlobService {
  private readonly fills = new Map<string, Fill>()

  constructor(
    private readonly config: Config,
    private readonly store: BlobStore,
    private readonly index: LruIndex,
    private readonly upstream: UpstreamClient,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /** Fills in progress (for shutdown and tests). */
  activeFills(): Fill[] {
    return [...this.fills.values()]
  }

  async get(up: UpstreamConfig, repo: string, d: Digest): Promise<BlobHandle> {
    const hit = await this.fromCache(d)
    if (hit) return hit
    let fill = this.fills.get(d.value)
    // A failed fill stays in the map until its promise settles, and an uncached one cannot serve
    // a new client from the start once its window moved on: the next request starts afresh.
    if (fill && (fill.state === 'failed' || !fill.joinable())) fill = undefined
    const joined = fill !== undefined
    if (!fill) fill = this.startFill(up, repo, d)
    else this.metrics.fillReadersJoined.inc()
    // Holds the fill's file (or memory window) for this request even if the download ends before it reads.
    const hold = fill.attach()
    let size: number | undefined
    try {
      size = await fill.ready
    } catch (err) {
      hold.release()
      throw err
    }
    // The fill may have finished while we waited; then the file is simply in the cache.
    if (fill.state === 'done' && fill.kept) {
      const after = await this.fromCache(d)
      if (after) {
        hold.release()
        return after
      }
    }
    return {
      size,
      source: 'fill',
      joined,
      open: (start, end) => {
        const r = hold.open(start, end)
        if (joined) r.on('data', (c: Buffer) => this.metrics.fillJoinedBytes.inc(c.length))
        return r
      },
      release: hold.release,
    }
  }

  /** Size of a blob without downloading it: from cache, else a HEAD upstream. */
  async head(up: UpstreamConfig, repo: string, d: Digest): Promise<{ size: number; cache: 'hit' | 'miss' }> {
    const size = this.index.sizeOf(d.value)
    if (size !== undefined) {
      if ((await this.store.size(d)) === size) return { size, cache: 'hit' }
      await this.heal(d, size)
    }
    const fill = this.fills.get(d.value)
    if (fill) {
      const s = await fill.ready
      if (s !== undefined) return { size: s, cache: 'miss' }
    }
    const res = await this.upstream.request(up, { method: 'HEAD', path: `/v2/${repo}/blobs/${d.value}`, repo })
    await res.body.dump().catch(() => {})
    if (res.status !== 200) throw await upstreamFailure(up, res, 'BLOB_UNKNOWN')
    const len = contentLength(res)
    if (len === undefined)
      throw new RegmirrorError('UPSTREAM_ERROR', `${up.name} did not give the blob's size`, { detail: { upstream: up.name } })
    return { size: len, cache: 'miss' }
  }

  private async fromCache(d: Digest): Promise<BlobHandle | undefined> {
    const size = this.index.sizeOf(d.value)
    if (size === undefined) return undefined
    // Held from before the open until the response ends, so eviction cannot delete the file under this reader.
    this.index.acquire(d.value)
    let fd: number
    try {
      fd = await this.store.openForRead(d, size)
    } catch (err) {
      this.index.releaseUse(d.value)
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'SIZE_CHANGED') await this.heal(d, size)
      else this.log.error({ digest: d.value, code, err: errMessage(err) }, 'cannot open a cached blob; fetching it from upstream')
      return undefined
    }
    this.index.touch(d.value)
    let opened = false
    let released = false
    return {
      size,
      source: 'cache',
      joined: false,
      open: (start, end) => {
        opened = true
        return this.store.readStream(fd, start, end)
      },
      release: () => {
        if (released) return
        released = true
        if (!opened) this.store.closeFd(fd)
        this.index.releaseUse(d.value)
      },
    }
  }

  /**
   * A cached blob is gone or changed size under the running mirror (an operator, a disk fault):
   * the index forgets it and the damaged file goes, so the next request fills it again.
   */
  private async heal(d: Digest, size: number): Promise<void> {
    this.log.warn({ digest: d.value, size }, 'cached blob is missing or damaged on disk; dropped from the cache, it will be fetched again')
    this.index.forget(d.value)
    await this.store.remove(d).catch(() => {})
  }

  private startFill(up: UpstreamConfig, repo: string, d: Digest): Fill {
    let reserved = 0
    const fill = new Fill(
      d,
      this.store.tmpPathFor(d),
      { open: (offset) => this.openUpstream(up, repo, d, offset) },
      {
        admit: async (size) => {
          if (size === undefined) return true
          const ok = await this.index.reserve(size)
          if (ok) reserved = size
          else
            this.log.info(
              { digest: d.value, size, maxSize: this.index.maxSize },
              'no room in the cache (larger than it, or the rest is pinned or in use); streaming the blob through without keeping it',
            )
          return ok
        },
        reserveMore: async (bytes) => {
          const ok = await this.index.reserve(bytes)
          if (ok) reserved += bytes
          return ok
        },
        commit: async (tmpPath, size) => {
          if (reserved === 0 && size > 0) {
            // The upstream gave no size up front: room is made now, or the blob is not kept.
            if (await this.index.reserve(size)) reserved = size
            else {
              this.log.info({ digest: d.value, size, maxSize: this.index.maxSize }, 'no room in the cache; blob served but not kept')
              await unlink(tmpPath).catch(() => {})
              return
            }
          }
          await this.store.commit(tmpPath, d)
          await this.index.add(d.value, size, reserved)
          reserved = 0
        },
        abandon: () => {
          this.index.release(reserved)
          reserved = 0
        },
        onResume: (offset, attempt, err) => {
          this.metrics.fillResumes.inc()
          this.log.warn(
            { upstream: up.name, digest: d.value, offset, attempt, err: errMessage(err) },
            'upstream blob download broke off; resuming with Range',
          )
        },
        onWriteError: (err, offset) => {
          this.metrics.cacheWriteErrors.inc({ code: err.code ?? 'unknown' })
          this.log.error(
            { upstream: up.name, digest: d.value, code: err.code, offset, err: errMessage(err) },
            'cannot write to the cache; streaming the blob straight from upstream without caching it',
          )
        },
        onFailed: (err) => {
          this.metrics.fillsFailed.inc({ cause: err.code.toLowerCase() })
          if (err.code === 'DIGEST_MISMATCH') this.metrics.digestMismatches.inc({ kind: 'blob' })
          if (REFUSALS.has(err.code)) this.metrics.upstreamRefused.inc({ upstream: up.name, kind: 'blob', cause: err.code.toLowerCase() })
          this.log.error(
            { upstream: up.name, repository: repo, digest: d.value, code: err.code, err: errMessage(err) },
            'blob fill failed; nothing cached',
          )
        },
      },
      this.config.retries.resumeAttempts,
      { openFile: (p) => this.store.openTemp(p), maxUnsized: this.index.maxSize },
    )
    this.fills.set(d.value, fill)
    this.metrics.fillsStarted.inc()
    const forget = () => {
      // A newer fill may already have taken the slot (after this one failed).
      if (this.fills.get(d.value) === fill) this.fills.delete(d.value)
    }
    fill.finished.then(forget, forget)
    return fill.start()
  }

  /** The blob's size by a HEAD to the registry, or undefined when it will not say. */
  private async upstreamSize(up: UpstreamConfig, repo: string, d: Digest): Promise<number | undefined> {
    try {
      const res = await this.upstream.request(up, { method: 'HEAD', path: `/v2/${repo}/blobs/${d.value}`, repo, retry: false })
      await res.body.dump().catch(() => {})
      return res.status === 200 ? contentLength(res) : undefined
    } catch {
      return undefined
    }
  }

  private async openUpstream(up: UpstreamConfig, repo: string, d: Digest, offset: number): Promise<FillBody> {
    const res = await this.upstream.request(up, {
      method: 'GET',
      path: `/v2/${repo}/blobs/${d.value}`,
      repo,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    })
    const abort = () => res.body.destroy()
    if (offset === 0 && res.status === 200) {
      // A body without a length (chunked) is held to the size the registry gives for the blob.
      return { body: res.body, total: contentLength(res) ?? (await this.upstreamSize(up, repo, d)), abort }
    }
    if (offset > 0 && res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header(res.headers, 'content-range') ?? '')
      if (!m || Number(m[1]) !== offset) {
        abort()
        throw new RegmirrorError('UPSTREAM_ERROR', `${up.name} answered a resume with the wrong range`, { detail: { upstream: up.name } })
      }
      return { body: res.body, total: Number(m[3]), abort }
    }
    if (offset > 0 && res.status === 200) {
      // The upstream ignored Range: skip what we already have.
      return { body: skip(res.body, offset), total: contentLength(res), abort }
    }
    throw await upstreamFailure(up, res, 'BLOB_UNKNOWN')
  }
}

/** Content-Length as a byte count, or undefined when absent or not one. */
function contentLength(res: UpstreamResponse): number | undefined {
  const v = header(res.headers, 'content-length')
  if (v === undefined || !/^\d{1,16}$/.test(v)) return undefined
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : undefined
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

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
