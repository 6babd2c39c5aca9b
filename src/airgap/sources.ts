import { createHash } from 'node:crypto'
import { Agent, request, type Dispatcher } from 'undici'
import type { OpenParts } from '../app.js'
import { MANIFEST_ACCEPT, MAX_MANIFEST_SIZE } from '../oci/media-types.js'
import { parseDigest } from '../oci/reference.js'
import type { Descriptor } from './graph.js'
import type { ImageTarget } from './refs.js'

export interface FetchedManifest {
  digest: string
  mediaType: string
  body: Buffer
}

/**
 * Where preload gets images from, and where they end up: this machine's cache (the mirror's own
 * services, no server running), or a running mirror pulled through over HTTP (`--mirror URL`).
 */
export interface ImageSource {
  /** A manifest by tag or digest; by digest, its bytes are checked against it. */
  manifest(t: ImageTarget, ref: string): Promise<FetchedManifest>
  /** Makes sure a blob is cached; 'cached' when it already was. */
  blob(t: ImageTarget, d: Descriptor, onBytes: (n: number) => void): Promise<'cached' | 'fetched'>
  /** Manifests that refer to `digest` (OCI referrers), as the mirror knows them. */
  referrers(t: ImageTarget, digest: string): Promise<Descriptor[]>
  close(): Promise<void>
}

/** Through the mirror's services in this process, into its data directory: fills verify and keep every blob. */
export class LocalSource implements ImageSource {
  constructor(private readonly parts: OpenParts) {}

  async manifest(t: ImageTarget, ref: string): Promise<FetchedManifest> {
    const { manifests, tags } = this.parts
    const m = ref.startsWith('sha256:')
      ? (await manifests.get(t.up, t.repo, parseDigest(ref))).manifest
      : (await tags.resolve(t.up, t.repo, ref)).manifest
    return { digest: m.digest, mediaType: m.mediaType, body: m.body }
  }

  blob(t: ImageTarget, d: Descriptor, onBytes: (n: number) => void): Promise<'cached' | 'fetched'> {
    return this.parts.blobs.ensure(t.up, t.repo, parseDigest(d.digest), onBytes)
  }

  async referrers(t: ImageTarget, digest: string): Promise<Descriptor[]> {
    return (await this.parts.referrers.list(t.up, t.repo, parseDigest(digest))).manifests
  }

  async close(): Promise<void> {
    await this.parts.close()
  }
}

/**
 * Pulls through a running mirror, as a node would (`?ns=` names the upstream), so the mirror fills
 * its cache; every body is read to its end and checked against its digest here too.
 */
export class MirrorSource implements ImageSource {
  private readonly dispatcher: Dispatcher
  private readonly base: URL
  private readonly auth?: string

  constructor(url: string) {
    const u = new URL(url)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--mirror ${url}: not an http(s) URL`)
    if (u.username !== '')
      this.auth = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`
    u.username = ''
    u.password = ''
    this.base = u
    this.dispatcher = new Agent({ connections: 16, bodyTimeout: 120_000, headersTimeout: 120_000 })
  }

  private url(t: ImageTarget, path: string): string {
    const u = new URL(`/v2/${t.repo}/${path}`, this.base)
    u.searchParams.set('ns', t.up.name)
    return u.toString()
  }

  private async get(url: string, accept?: string) {
    const headers: Record<string, string> = {}
    if (accept) headers.accept = accept
    if (this.auth) headers.authorization = this.auth
    const res = await request(url, { dispatcher: this.dispatcher, headers })
    if (res.statusCode !== 200) {
      const text = (await res.body.text().catch(() => '')).slice(0, 500)
      const why = /"message":"([^"]*)"/.exec(text)?.[1] ?? text
      throw new Error(`the mirror answered ${res.statusCode}${why ? `: ${why}` : ''}`)
    }
    return res
  }

  async manifest(t: ImageTarget, ref: string): Promise<FetchedManifest> {
    const res = await this.get(this.url(t, `manifests/${ref}`), MANIFEST_ACCEPT)
    const chunks: Buffer[] = []
    let n = 0
    for await (const c of res.body) {
      n += (c as Buffer).length
      if (n > MAX_MANIFEST_SIZE) {
        res.body.destroy()
        throw new Error(`manifest ${ref} is larger than ${MAX_MANIFEST_SIZE} bytes`)
      }
      chunks.push(c as Buffer)
    }
    const body = Buffer.concat(chunks)
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`
    const claimed = ref.startsWith('sha256:') ? ref : String(res.headers['docker-content-digest'] ?? digest)
    if (claimed !== digest) throw new Error(`manifest ${ref} does not match its digest (got ${digest})`)
    return { digest, mediaType: String(res.headers['content-type'] ?? '').split(';')[0] ?? '', body }
  }

  async blob(t: ImageTarget, d: Descriptor, onBytes: (n: number) => void): Promise<'cached' | 'fetched'> {
    const res = await this.get(this.url(t, `blobs/${d.digest}`))
    const hash = createHash('sha256')
    for await (const c of res.body) {
      hash.update(c as Buffer)
      onBytes((c as Buffer).length)
    }
    const got = `sha256:${hash.digest('hex')}`
    if (got !== d.digest) throw new Error(`blob ${d.digest} came back as ${got}`)
    return res.headers['x-regmirror-cache'] === 'hit' ? 'cached' : 'fetched'
  }

  async referrers(t: ImageTarget, digest: string): Promise<Descriptor[]> {
    const res = await this.get(this.url(t, `referrers/${digest}`), 'application/vnd.oci.image.index.v1+json')
    const doc = (await res.body.json()) as { manifests?: Descriptor[] }
    return Array.isArray(doc.manifests) ? doc.manifests : []
  }

  async close(): Promise<void> {
    await this.dispatcher.close()
  }
}
