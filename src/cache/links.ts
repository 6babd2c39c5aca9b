import { mkdir, readdir, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Digest } from '../oci/reference.js'
import type { Layout } from './layout.js'

/**
 * Who may see a digest the cache holds, on disk so it holds across restarts and offline
 * (layout.ts): for a private upstream, which of its repositories confirmed holding it (like
 * distribution's layer links); for everyone else, whether only private upstreams brought it
 * (`restricted/`). Nothing is written while no upstream is private, and content cached before one
 * was configured is public as it always was. A record that cannot be written is no harm for a
 * link (the upstream is asked again) and is retried for a mark (see record()).
 */
export class ContentLinks {
  private constructor(
    private readonly layout: Layout,
    /** Whether any check is needed: some upstream is private, or was and left restricted content. */
    readonly enabled: boolean,
  ) {}

  static async open(layout: Layout, anyPrivate: boolean): Promise<ContentLinks> {
    const leftOver = (await readdir(layout.restrictedDir).catch(() => [])).length > 0
    return new ContentLinks(layout, anyPrivate || leftOver)
  }

  async confirmed(upstream: string, repo: string, d: Digest): Promise<boolean> {
    return exists(this.layout.contentLink(upstream, repo, d))
  }

  async restricted(d: Digest): Promise<boolean> {
    return exists(this.layout.restrictedMark(d))
  }

  /**
   * Only private upstreams brought `d` so far: called before its content is kept. false when the
   * mark could not be written; the content must then not be kept, or a public upstream could serve it.
   */
  async markRestricted(d: Digest): Promise<boolean> {
    if (!this.enabled) return true
    return touch(this.layout.restrictedMark(d)).then(
      () => true,
      () => false,
    )
  }

  /** A private upstream's `repo` brought or confirmed `d`: it may see it from now on. */
  async confirm(upstream: string, repo: string, d: Digest): Promise<void> {
    if (this.enabled) await touch(this.layout.contentLink(upstream, repo, d)).catch(() => {})
  }

  /** A public upstream brought or confirmed `d`: anyone may see it. */
  async makePublic(d: Digest): Promise<void> {
    if (this.enabled) await unlink(this.layout.restrictedMark(d)).catch(() => {})
  }

  /** After content of `d` came through `upstream`'s `repo`, or it confirmed holding it. */
  async record(upstream: string, repo: string, d: Digest, isPrivate: boolean): Promise<void> {
    if (isPrivate) await this.confirm(upstream, repo, d)
    else await this.makePublic(d)
  }
}

async function touch(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, '')
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}
