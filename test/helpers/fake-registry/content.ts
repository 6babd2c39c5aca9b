// What the fake serves: blobs by digest, and per repository its manifests and tags. Memory only; the routes
// decide who may see it and how it goes on the wire.
import { buildImage, sha256, type FakeImage, type ImageOptions } from '../oci-fixtures.js'

export interface StoredManifest {
  body: Buffer
  mediaType: string
}

interface Repo {
  manifests: Map<string, StoredManifest>
  tags: Map<string, string>
}

export class Content {
  private readonly blobs = new Map<string, Buffer>()
  private readonly repos = new Map<string, Repo>()
  /** Per image blob, the repositories it came with (a real registry links blobs to repositories). */
  private readonly blobRepos = new Map<string, Set<string>>()

  addBlob(bytes: Buffer): string {
    const d = sha256(bytes)
    this.blobs.set(d, bytes)
    return d
  }

  deleteBlob(digest: string): void {
    this.blobs.delete(digest)
  }

  /** With `repo`, only a blob linked to it (or added alone, by addBlob, which links it everywhere). */
  blob(digest: string, repo?: string): Buffer | undefined {
    const linked = this.blobRepos.get(digest)
    if (repo !== undefined && linked !== undefined && !linked.has(repo)) return undefined
    return this.blobs.get(digest)
  }

  addManifest(name: string, body: Buffer, mediaType: string, tag?: string): string {
    const d = sha256(body)
    const r = this.repo(name)
    r.manifests.set(d, { body, mediaType })
    if (tag !== undefined) r.tags.set(tag, d)
    return d
  }

  setTag(name: string, tag: string, digest: string): void {
    this.repo(name).tags.set(tag, digest)
  }

  deleteTag(name: string, tag: string): void {
    this.repos.get(name)?.tags.delete(tag)
  }

  addImage(name: string, tag: string, opts?: ImageOptions): FakeImage {
    const img = buildImage(name, tag, opts)
    for (const b of img.blobs) {
      this.blobs.set(b.digest, b.bytes)
      if (!this.blobRepos.has(b.digest)) this.blobRepos.set(b.digest, new Set())
      this.blobRepos.get(b.digest)!.add(name)
    }
    for (const m of img.manifests) this.addManifest(name, m.body, m.mediaType)
    if (img.index) this.addManifest(name, img.index.body, img.index.mediaType)
    this.setTag(name, tag, img.digest)
    return img
  }

  /** the repository's tags in no particular order; undefined when the repository is unknown */
  tagNames(name: string): string[] | undefined {
    const r = this.repos.get(name)
    return r ? [...r.tags.keys()] : undefined
  }

  tagTarget(name: string, tag: string): string | undefined {
    return this.repos.get(name)?.tags.get(tag)
  }

  manifest(name: string, digest: string): StoredManifest | undefined {
    return this.repos.get(name)?.manifests.get(digest)
  }

  /** The OCI referrers of `subject` in a repository: its manifests whose `subject` names it. */
  referrers(name: string, subject: string): { mediaType: string; digest: string; size: number; artifactType?: string }[] {
    const out = []
    for (const [digest, m] of this.repos.get(name)?.manifests ?? []) {
      const doc = JSON.parse(m.body.toString()) as { subject?: { digest?: string }; artifactType?: string; config?: { mediaType?: string } }
      if (doc.subject?.digest !== subject) continue
      const artifactType = doc.artifactType ?? doc.config?.mediaType
      out.push({ mediaType: m.mediaType, digest, size: m.body.length, ...(artifactType ? { artifactType } : {}) })
    }
    return out
  }

  private repo(name: string): Repo {
    let r = this.repos.get(name)
    if (!r) {
      r = { manifests: new Map(), tags: new Map() }
      this.repos.set(name, r)
    }
    return r
  }
}
