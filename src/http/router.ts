import type { UpstreamConfig } from '../config/schema.js'
import { RegmirrorError } from '../errors.js'
import { assertName, namesRegistry, parseDigest, parseManifestRef, type Digest, type ManifestRef } from '../oci/reference.js'
import type { Registries } from '../config/registries.js'

export type Route =
  | { kind: 'base' }
  | { kind: 'healthz' }
  | { kind: 'readyz' }
  | { kind: 'metrics' }
  | { kind: 'ping' }
  | { kind: 'search' }
  /** `up`: the one upstream a `?ns=` or a mapped Host names; none: every upstream. */
  | { kind: 'catalog'; up?: UpstreamConfig }
  /** The status page (`/`) and its data (`/api/status`); http/handlers/status.ts. */
  | { kind: 'ui' | 'status' }
  | { kind: 'manifest'; up: UpstreamConfig; repo: string; name: string; ref: ManifestRef }
  | { kind: 'blob'; up: UpstreamConfig; repo: string; name: string; digest: Digest }
  | { kind: 'tags'; up: UpstreamConfig; repo: string; name: string }
  | { kind: 'referrers'; up: UpstreamConfig; repo: string; name: string; digest: Digest }

const API_RE = /^\/v2\/(.+)\/(manifests|blobs|referrers)\/([^/]+)$/
const TAGS_RE = /^\/v2\/(.+)\/tags\/list$/
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/**
 * Turns a request into a typed route: which upstream, which repository, which reference.
 * The upstream comes from, in order: `?ns=<registry>` (containerd hosts.toml; a first path component
 * naming that same registry is an `override_path` prefix and is dropped), a Host header
 * mapped to an upstream, a first path component naming a configured registry
 * (`/v2/ghcr.io/owner/app/...`), else the default upstream (Docker daemon `registry-mirrors`).
 * Everything is grammar-checked here, before any of it is used.
 */
export function route(method: string, rawUrl: string, host: string | undefined, registries: Registries): Route {
  const q = rawUrl.indexOf('?')
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
  const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1))
  if (path === '/healthz') return { kind: 'healthz' }
  if (path === '/readyz') return { kind: 'readyz' }
  if (path === '/metrics') return { kind: 'metrics' }
  if (path === '/' || path === '/api/status') {
    if (method !== 'GET' && method !== 'HEAD') throw unsupported()
    return { kind: path === '/' ? 'ui' : 'status' }
  }
  if (path === '/v2' || path === '/v2/') {
    if (WRITE_METHODS.has(method)) throw unsupported()
    return { kind: 'base' }
  }
  // Docker's v1 search API, which `docker search MIRROR/term` still uses, and the catalog.
  const listing =
    path === '/v1/_ping' || path === '/v1/_ping/'
      ? 'ping'
      : path === '/v1/search'
        ? 'search'
        : path === '/v2/_catalog'
          ? 'catalog'
          : undefined
  if (listing !== undefined) {
    if (method !== 'GET' && method !== 'HEAD') throw unsupported()
    if (listing !== 'catalog') return { kind: listing }
    const ns = query.get('ns')
    if (ns === null) return { kind: 'catalog', up: registries.byHost(host) }
    const up = registries.byName(ns)
    if (!up) throw notConfigured(ns)
    return { kind: 'catalog', up }
  }
  if (!path.startsWith('/v2/')) throw new RegmirrorError('NAME_UNKNOWN', 'not a registry API path')
  if (WRITE_METHODS.has(method)) throw unsupported()
  if (method !== 'GET' && method !== 'HEAD') throw unsupported()
  // Names never need percent-encoding; an encoded byte (%2F, %00, %2E) is an attempt to smuggle one.
  if (path.includes('%') || path.includes('\0') || path.includes('//')) {
    throw new RegmirrorError('NAME_INVALID', 'invalid repository name')
  }
  if (path.length > 1024) throw new RegmirrorError('NAME_INVALID', 'request path too long')

  const tags = TAGS_RE.exec(path)
  const api = tags ? undefined : API_RE.exec(path)
  if (!tags && !api) throw new RegmirrorError('NAME_UNKNOWN', 'not a registry API path')
  const rawName = (tags ? tags[1] : api?.[1]) as string
  const { up, name } = pickUpstream(rawName, query.get('ns'), host, registries)
  assertName(name)
  const repo = registries.normalizeRepo(up, name)
  assertName(repo)
  registries.assertAllowed(up, repo)
  if (tags) return { kind: 'tags', up, repo, name: rawName }
  const ref = api?.[3] as string
  if (api?.[2] === 'blobs') return { kind: 'blob', up, repo, name: rawName, digest: parseDigest(ref) }
  if (api?.[2] === 'referrers') return { kind: 'referrers', up, repo, name: rawName, digest: parseDigest(ref) }
  return { kind: 'manifest', up, repo, name: rawName, ref: parseManifestRef(ref) }
}

function pickUpstream(
  rawName: string,
  ns: string | null,
  host: string | undefined,
  registries: Registries,
): { up: UpstreamConfig; name: string } {
  if (ns !== null) {
    const up = registries.byName(ns)
    if (!up) throw notConfigured(ns)
    return { up, name: stripNsPrefix(rawName, up, registries) }
  }
  const byHost = registries.byHost(host)
  if (byHost) return { up: byHost, name: rawName }
  const slash = rawName.indexOf('/')
  if (slash > 0) {
    const first = rawName.slice(0, slash)
    const up = registries.byName(first)
    if (up) return { up, name: rawName.slice(slash + 1) }
    // Docker's reference grammar: a first component with a dot or a port, or `localhost`, is a
    // registry (Docker Hub namespaces have neither); one that is not configured is refused
    // rather than sent to the default upstream. A component that is not even a host name
    // ('.', '..') falls through to the name check: a 400.
    if (namesRegistry(first)) throw notConfigured(first)
  }
  return { up: registries.defaultUpstream, name: rawName }
}

/**
 * containerd mirrors configured with `override_path = true` and the registry in the mirror's path
 * (`[host."http://mirror:5000/v2/docker.io"]`, as for Harbor, zot and Talos) send
 * `/v2/docker.io/library/x/manifests/v1?ns=docker.io`. A first component that names the same upstream
 * as `?ns=` (by name or registry host) is that prefix, not part of the repository. The cost: a
 * repository whose own first component is its registry's name (`reg.example/reg.example/app`; Docker
 * Hub and GitHub account names cannot contain a dot) is not reached through a plain `?ns=` mirror,
 * which sends `/v2/reg.example/app?ns=reg.example`; with `override_path`, by path prefix or by a mapped
 * Host it is, since there the prefix is always present or never.
 */
function stripNsPrefix(rawName: string, up: UpstreamConfig, registries: Registries): string {
  const slash = rawName.indexOf('/')
  if (slash <= 0) return rawName
  return registries.byName(rawName.slice(0, slash)) === up ? rawName.slice(slash + 1) : rawName
}

function notConfigured(registry: string): RegmirrorError {
  return new RegmirrorError('NAME_UNKNOWN', `registry ${registry.slice(0, 100)} is not configured on this mirror`, {
    detail: { registry: registry.slice(0, 100) },
  })
}

function unsupported(): RegmirrorError {
  return new RegmirrorError('UNSUPPORTED', 'this mirror is read-only: pushes and deletes are not supported')
}
