import { EventEmitter } from 'node:events'
import { open, type FileHandle } from 'node:fs/promises'
import type { Fill } from '../cache/fill/fill.js'
import { openReader, type FillView } from '../cache/fill/readers.js'
import type { SharedFills, Shared } from '../cache/fills.js'
import type { BlobHandle } from '../cache/hits.js'
import { ERRORS, RegmirrorError, type ErrorCode } from '../errors.js'
import type { Logger } from '../log.js'
import type { Digest } from '../oci/reference.js'
import type { FillReport, PrimaryApi } from './protocol.js'
import type { Rpc } from './rpc.js'

// Progress is passed on in steps of this much (or after PROGRESS_MS): a message per chunk would
// cost more than the copy it announces.
const PROGRESS_STEP = 1024 * 1024
const PROGRESS_MS = 20
// A follower's reads of the owner's temp file, into a fresh buffer each (the reader pushes it).
const READ_CHUNK = 256 * 1024

/**
 * A worker's side of the primary's FillBoard: before a fill starts here the primary is asked who
 * downloads the digest; the fills this worker owns are reported; another worker's download is read
 * from its temp file as the owner's progress arrives (FollowedFill).
 */
export class SharedFillsClient implements SharedFills {
  private readonly owned = new Set<string>()
  private readonly followed = new Map<string, Set<FollowedFill>>()

  constructor(
    private readonly rpc: Rpc<PrimaryApi>,
    private readonly log: Logger,
  ) {
    const each = (digest: string, fn: (f: FollowedFill) => void) => {
      for (const f of this.followed.get(digest) ?? []) fn(f)
    }
    rpc.on('fill.progress', (m) => {
      const { digest, written } = m as { digest: string; written: number }
      each(digest, (f) => f.progress(written))
    })
    rpc.on('fill.done', (m) => {
      const { digest, size } = m as { digest: string; size: number }
      each(digest, (f) => f.done(size))
    })
    rpc.on('fill.failed', (m) => {
      const { digest, code, message } = m as { digest: string; code: string; message: string }
      each(digest, (f) => f.fail(errorOf(code, message)))
    })
  }

  async share(d: Digest): Promise<Shared> {
    const claim = await this.rpc.call('fills.claim', [d.value], { timeoutMs: 0 })
    switch (claim.role) {
      case 'cached':
        return { cached: true }
      case 'owner':
        this.owned.add(d.value)
        return {}
      case 'alone':
        return {}
      case 'failed':
        throw errorOf(claim.code, claim.message)
      case 'follow':
        return this.follow(d, claim.path, claim.size, claim.written)
    }
  }

  active(d: Digest): Promise<boolean> {
    return this.rpc.call('fills.active', [d.value])
  }

  abandon(d: Digest): void {
    if (!this.owned.delete(d.value)) return
    this.report({ event: 'failed', digest: d.value, code: 'INTERNAL', message: 'the download could not start' })
  }

  /** A fill started here: reported to the primary when this worker owns the digest. */
  started(fill: Fill, path: string): void {
    const digest = fill.digest.value
    if (!this.owned.has(digest)) return
    this.report({ event: 'started', digest, path })
    let followable = false
    let sent = 0
    let timer: NodeJS.Timeout | undefined
    const progress = () => {
      clearTimeout(timer)
      timer = undefined
      // What is in the temp file, which followers read: the newest received bytes may still be in the spool.
      if (fill.onDisk > sent) this.report({ event: 'progress', digest, written: (sent = fill.onDisk) })
    }
    const onChange = () => {
      if (followable && fill.mode === 'memory' && fill.state === 'running') {
        // The file stopped growing (a write error): followers cannot go on, and are told so.
        followable = false
        end({ event: 'failed', digest, code: 'CACHE_IO', message: 'the download could not be written to the cache' })
      } else if (followable && fill.onDisk - sent >= PROGRESS_STEP) progress()
      else if (followable && !timer) timer = setTimeout(progress, PROGRESS_MS)
    }
    const end = (r: FillReport) => {
      clearTimeout(timer)
      fill.off('change', onChange)
      if (this.owned.delete(digest)) this.report(r)
    }
    fill.on('change', onChange)
    fill.ready.then(
      (size) => {
        followable = fill.kept && fill.mode === 'disk'
        this.report({ event: 'running', digest, size, followable })
      },
      () => {},
    )
    fill.finished.then(
      () => {
        progress()
        end({ event: 'done', digest, size: fill.written })
      },
      (err: unknown) => {
        const e = err instanceof RegmirrorError ? err : new RegmirrorError('UPSTREAM_ERROR', 'blob download failed')
        end({ event: 'failed', digest, code: e.code, message: e.message })
      },
    )
  }

  private report(r: FillReport): void {
    this.rpc.notify('fill', r)
  }

  /** Reads another worker's download; undefined (`cached`) when its file is already gone (committed or failed). */
  private async follow(d: Digest, path: string, size: number, written: number): Promise<Shared> {
    const digest = d.value
    // The primary holds the digest in use for this follower from its join: released once, at the end.
    let ended = false
    const leave = () => {
      if (ended) return
      ended = true
      this.rpc.notify('fill.leave', digest)
      this.rpc.notify('index.releaseUse', digest)
    }
    // Listening before the file is opened: the owner may report its end meanwhile.
    const fill = new FollowedFill(size, written)
    let set = this.followed.get(digest)
    if (!set) this.followed.set(digest, (set = new Set()))
    set.add(fill)
    const unlist = () => {
      set.delete(fill)
      if (set.size === 0 && this.followed.get(digest) === set) this.followed.delete(digest)
    }
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (err) {
      unlist()
      leave()
      // Gone already: committed (a hit now) or failed (the next claim says).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { cached: true }
      throw err
    }
    fill.fh = fh
    const forget = () => {
      unlist()
      void fh.close().catch(() => {})
      leave()
    }
    this.log.debug({ digest, path }, "following another worker's download")
    return { handle: fill.handle(forget) }
  }
}

/** Another worker's download, as a reader sees it (readers.ts): bytes from its temp file, state from the primary. */
class FollowedFill extends EventEmitter<{ change: [] }> implements FillView {
  state: FillView['state'] = 'running'
  error: RegmirrorError | undefined

  /** Set once the file is open, before any reader exists. */
  fh!: FileHandle

  constructor(
    readonly size: number,
    public written: number,
  ) {
    super()
    this.setMaxListeners(0)
  }

  progress(written: number): void {
    if (this.state !== 'running' || written <= this.written) return
    this.written = written
    this.emit('change')
  }

  done(size: number): void {
    if (this.state !== 'running') return
    this.written = size
    this.state = 'done'
    this.emit('change')
  }

  fail(err: RegmirrorError): void {
    if (this.state !== 'running') return
    this.state = 'failed'
    this.error = err
    this.emit('change')
  }

  async read(pos: number, len: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(Math.min(len, READ_CHUNK))
    return buf.subarray(0, (await this.fh.read(buf, 0, buf.length, pos)).bytesRead)
  }

  changed(): { promise: Promise<void>; cancel(): void } {
    let listener = () => {}
    const promise = new Promise<void>((resolve) => {
      listener = resolve
      this.once('change', listener)
    })
    return { promise, cancel: () => this.off('change', listener) }
  }

  advanced(): void {}

  /** The response's handle: the file stays open until the reader (if any) and the response are both done. */
  handle(forget: () => void): BlobHandle {
    let refs = 1
    const unref = () => {
      if (--refs === 0) forget()
    }
    let released = false
    return {
      size: this.size,
      source: 'fill',
      joined: true,
      open: (start, end) => {
        refs++
        let done = false
        return openReader(this, start, end, { pos: start }, () => {
          if (done) return
          done = true
          unref()
        })
      },
      release: () => {
        if (released) return
        released = true
        unref()
      },
    }
  }
}

function errorOf(code: string, message: string): RegmirrorError {
  return new RegmirrorError(code in ERRORS ? (code as ErrorCode) : 'INTERNAL', message)
}
