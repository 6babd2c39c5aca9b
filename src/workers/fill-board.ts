import type { Claim, FillReport } from './protocol.js'

interface Entry {
  owner: number
  state: 'claimed' | 'running' | 'unshared'
  path?: string
  size?: number
  written: number
  /** Workers following the download, with how many of their clients do. */
  followers: Map<number, number>
  /** Claims waiting for the owner's download to be followable (or to end). */
  waiters: { worker: number; resolve(c: Claim): void }[]
}

/** What the board needs of the rest of the primary. */
export interface BoardDeps {
  /** Whether the digest is in the cache now. */
  cached(digest: string): boolean
  /** Holds the digest in use for a follower (IndexHost.acquire), released by its index.releaseUse. */
  acquire(worker: number, digest: string): void
  /** Sends an event to one worker. */
  send(worker: number, name: 'fill.progress' | 'fill.done' | 'fill.failed', data: unknown): void
  /** Removes a dead owner's temp file. */
  removeFile(path: string): Promise<void>
}

/**
 * The primary's registry of downloads in progress across workers: one download per blob. The first
 * worker to miss a digest owns its fill and reports it (FillReport); the others follow its temp file
 * as progress arrives, holding their last byte until the owner says the blob is verified and
 * committed. A fill with no file to follow (the blob is not kept: it goes through the owner's memory
 * window) cannot be followed: others then download on their own (docs/architecture.md, "Workers").
 */
export class FillBoard {
  private readonly entries = new Map<string, Entry>()

  constructor(private readonly deps: BoardDeps) {}

  claim(worker: number, digest: string): Promise<Claim> {
    const e = this.entries.get(digest)
    if (!e) {
      if (this.deps.cached(digest)) return Promise.resolve({ role: 'cached' })
      this.entries.set(digest, { owner: worker, state: 'claimed', written: 0, followers: new Map(), waiters: [] })
      return Promise.resolve({ role: 'owner' })
    }
    // The owner's own clients join its fill locally.
    if (e.owner === worker) return Promise.resolve({ role: 'owner' })
    if (e.state === 'unshared') return Promise.resolve({ role: 'alone' })
    if (e.state === 'running') return Promise.resolve(this.follow(worker, digest, e))
    return new Promise((resolve) => e.waiters.push({ worker, resolve }))
  }

  active(digest: string): boolean {
    return this.entries.has(digest)
  }

  /** What an owner tells of its fill. Reports from a worker that does not own the digest are ignored. */
  report(worker: number, r: FillReport): void {
    const e = this.entries.get(r.digest)
    if (!e || e.owner !== worker) return
    switch (r.event) {
      case 'started':
        e.path = r.path
        return
      case 'running':
        e.size = r.size
        e.state = r.followable && r.size !== undefined && e.path !== undefined ? 'running' : 'unshared'
        for (const w of e.waiters.splice(0)) w.resolve(e.state === 'running' ? this.follow(w.worker, r.digest, e) : { role: 'alone' })
        return
      case 'progress':
        e.written = r.written
        for (const f of e.followers.keys()) this.deps.send(f, 'fill.progress', { digest: r.digest, written: r.written })
        return
      case 'done':
        this.end(r.digest, e, 'fill.done', { digest: r.digest, size: r.size }, { role: 'cached' })
        return
      case 'failed':
        this.end(r.digest, e, 'fill.failed', r, { role: 'failed', code: r.code, message: r.message })
    }
  }

  /** A follower's client is done with the digest (its hold is released separately, through the index). */
  leave(worker: number, digest: string): void {
    const e = this.entries.get(digest)
    const n = e?.followers.get(worker) ?? 0
    if (!e || n === 0) return
    if (n === 1) e.followers.delete(worker)
    else e.followers.set(worker, n - 1)
  }

  /**
   * A worker exited: the fills it owned fail (their followers are destroyed, their temp files
   * removed), its waiting claims and followings are dropped. The caller drops its index holds.
   */
  async workerGone(worker: number): Promise<void> {
    const files: string[] = []
    for (const [digest, e] of [...this.entries]) {
      e.followers.delete(worker)
      e.waiters = e.waiters.filter((w) => w.worker !== worker)
      if (e.owner !== worker) continue
      if (e.path) files.push(e.path)
      const message = 'the worker process downloading this blob exited'
      this.end(digest, e, 'fill.failed', { digest, code: 'UPSTREAM_ERROR', message }, { role: 'failed', code: 'UPSTREAM_ERROR', message })
    }
    await Promise.all(files.map((f) => this.deps.removeFile(f)))
  }

  /** Fills in progress, for tests and the status of the primary. */
  get size(): number {
    return this.entries.size
  }

  private follow(worker: number, digest: string, e: Entry): Claim {
    e.followers.set(worker, (e.followers.get(worker) ?? 0) + 1)
    // Held from the join: once the owner commits, eviction must not take the file this follower reads.
    this.deps.acquire(worker, digest)
    return { role: 'follow', path: e.path as string, size: e.size as number, written: e.written }
  }

  private end(digest: string, e: Entry, name: 'fill.done' | 'fill.failed', data: unknown, waiting: Claim): void {
    this.entries.delete(digest)
    for (const f of e.followers.keys()) this.deps.send(f, name, data)
    for (const w of e.waiters) w.resolve(waiting)
  }
}
