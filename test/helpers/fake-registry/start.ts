// startFakeRegistry: the parts wired together, and the handle a test holds.
import type { FakeImage, ImageOptions } from '../oci-fixtures.js'
import { Cdn } from './cdn.js'
import { Content } from './content.js'
import { FaultSet, matches, type Fault, type RequestMatch } from './faults.js'
import { RegistryRoutes } from './registry-routes.js'
import { startServers, type RecordedRequest, type ServerUrls } from './server.js'
import { SERVICE, TokenRealm } from './token-realm.js'

export interface FakeRegistryOptions {
  /** default 'bearer': Docker Hub style token auth */
  auth?: 'none' | 'bearer'
  /** if set, the token endpoint requires HTTP Basic with these for any token; else tokens are anonymous */
  credentials?: { username: string; password: string }
  /** more accounts the token endpoint accepts besides `credentials` (several accounts of one registry) */
  users?: { username: string; password: string }[]
  /** expires_in in token responses (default 300) */
  tokenTtlSeconds?: number
  /** default true: blob GET on the registry -> 307 to the CDN server with a signed query string */
  redirectBlobs?: boolean
  /** Docker Hub style ratelimit-* headers on manifest responses; each manifest GET served with 200 decrements
   *  remaining (HEADs don't); a manifest GET with remaining 0 gets 429 TOOMANYREQUESTS. `window` is the `w=`
   *  the headers give (seconds, default 21600). `perUser`: each account's own count, by the user name the token
   *  was issued to (`remaining` is then the anonymous count). */
  rateLimit?: { limit: number; remaining: number; window?: number; perUser?: Record<string, number> }
  /** advertise this token realm in challenges instead of the fake's own auth server (hostile-upstream tests) */
  realm?: string
  /** address the three servers listen on (default 127.0.0.1) */
  host?: string
  /** a blob of an image is found only in that image's repository, as in a real registry (default: in any) */
  scopedBlobs?: boolean
  /** Serve the OCI referrers API (default); false answers it 404, as CNCF distribution 2.8 does. */
  referrersApi?: boolean
}

export interface FakeRegistry {
  url: string
  authUrl: string
  cdnUrl: string
  /** the `service` the challenge names */
  readonly service: string
  addBlob(bytes: Buffer): string
  addManifest(repo: string, body: Buffer, mediaType: string, tag?: string): string
  setTag(repo: string, tag: string, digest: string): void
  deleteTag(repo: string, tag: string): void
  /** removes a blob (e.g. to prove a later pull is served from the cache) */
  deleteBlob(digest: string): void
  addImage(repo: string, tag: string, opts?: ImageOptions): FakeImage
  requests: RecordedRequest[]
  count(filter: RequestMatch): number
  /** clears requests (not content, faults or tokens) */
  reset(): void
  fault(f: Fault): void
  clearFaults(): void
  /** makes every token issued so far invalid (registry answers 401 again) */
  expireTokens(): void
  /** current remaining count when rateLimit is set (the anonymous one with perUser) */
  readonly rateLimitRemaining: number | undefined
  /** current remaining count of an account, with rateLimit.perUser */
  remainingOf(user: string): number | undefined
  /** sets what an account (or, without a user, the anonymous count) has left, e.g. to start a new window */
  setRemaining(remaining: number, user?: string): void
  close(): Promise<void>
}

export async function startFakeRegistry(opts: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  const urls: ServerUrls = { registry: '', auth: '', cdn: '' }
  const content = new Content()
  const realm = new TokenRealm(opts, urls)
  const cdn = new Cdn(content, urls)
  const registry = new RegistryRoutes(opts, content, realm, cdn)
  const faults = new FaultSet()
  const requests: RecordedRequest[] = []
  const close = await startServers({
    host: opts.host ?? '127.0.0.1',
    urls,
    faults,
    requests,
    routes: {
      registry: (req, u) => registry.route(req, u),
      auth: (req, u) => realm.route(req, u),
      cdn: (req, u) => cdn.route(req, u),
    },
  })

  return {
    url: urls.registry,
    authUrl: urls.auth,
    cdnUrl: urls.cdn,
    service: SERVICE,
    requests,
    addBlob: (bytes) => content.addBlob(bytes),
    deleteBlob: (digest) => content.deleteBlob(digest),
    addManifest: (name, body, mediaType, tag) => content.addManifest(name, body, mediaType, tag),
    setTag: (name, tag, digest) => content.setTag(name, tag, digest),
    deleteTag: (name, tag) => content.deleteTag(name, tag),
    addImage: (name, tag, imageOpts) => content.addImage(name, tag, imageOpts),
    count: (filter) => requests.filter((r) => matches(filter, r.server, r.method, r.path)).length,
    reset: () => {
      requests.length = 0
    },
    fault: (f) => faults.add(f),
    clearFaults: () => faults.clear(),
    expireTokens: () => realm.expireAll(),
    get rateLimitRemaining() {
      return registry.rateLimitRemaining
    },
    remainingOf: (user) => registry.remainingOf(user),
    setRemaining: (n, user) => registry.setRemaining(n, user),
    close,
  }
}
