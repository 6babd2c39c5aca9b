/**
 * The upstream registries: the fields of one `upstreams:` entry (declared once, like the top-level settings
 * in settings.ts), the built-in registries, and how entries, built-ins and `--upstream NAME=URL` /
 * REGMIRROR_UPSTREAMS combine into the resolved list.
 */
import { z } from 'zod'
import { credentials } from './credentials.js'
import { endpointList, resolvePool, urlList } from './endpoints.js'
import { defaultOf, entries, getPath, isRecord, objectSchema, setting, type ResolveContext, type Resolved } from './declare.js'
import { parseUpstreamAssignment } from './parse.js'
import * as v from './values.js'
import type { SchemaContext, ValueType } from './values.js'

/**
 * `pattern` is a glob matched against the tag (`latest`, `v*`, `*-rc*`) or, if it contains ':', against
 * `repo:tag` (`library/nginx:*`); `*` matches any run of characters except '/', `**` matches anything.
 * The literal word `semver` matches version-like tags: 1, 1.2, v1.2.3, 1.2.3-alpine.
 */
export interface TtlRule {
  pattern: string
  ttl: number
}

/** The upstream answers that `serveStaleOn` may turn into a stale copy: the ones an image deleted or made private gets. */
export const STALE_ON_STATUSES = [401, 403, 404] as const
export type StaleOnStatus = (typeof STALE_ON_STATUSES)[number]

const staleOnStatus: ValueType<StaleOnStatus> = {
  doc: 'status',
  plural: 'statuses (`401`, `403`, `404`)',
  schema: () => z.literal(STALE_ON_STATUSES),
  format: (n) => n,
}

const ttlRule: ValueType<TtlRule> = {
  doc: '`{pattern, ttl}`',
  plural: '`{pattern, ttl}`',
  schema: (sc) => z.strictObject({ pattern: v.string.schema(sc), ttl: v.duration.schema(sc) }),
  format: (r) => ({ pattern: r.pattern, ttl: v.duration.format(r.ttl) }),
}

/**
 * The fields of one upstream entry, in the order `config check` prints them. To add one: declare it here; it
 * is then in the file schema, in UpstreamConfig (unless `resolvedInto`), in `config check` and in the docs.
 * Its resolved value is the entry's, else the built-in registry's, else the inherited setting's, else the default.
 */
export const UPSTREAM_FIELDS = {
  name: setting(v.upstreamName, {
    required: true,
    doc:
      "the name clients use: containerd's `?ns=`, the path prefix (`/v2/ghcr.io/owner/app/...`), image references in `cache.pins`; " +
      'matched case-insensitively. The host of `url` (`registry-1.docker.io`) names the upstream too, unless another upstream has it as its name',
  }),
  enabled: setting(v.boolean, {
    default: true,
    resolvedInto: 'upstreams', // a disabled entry is left out of the list
    doc: '`false` removes the upstream (typically a built-in)',
  }),
  // No default: the built-in registry's, and an entry that is not built in must give it (checkUpstreamEntries).
  url: setting(v.httpUrl, {
    docDefault: 'built-in URL; required otherwise',
    doc:
      'base URL of the registry API (`/v2/` is appended); with `urls` or `endpoints`, their first URL. ' +
      'Give one of `url`, `urls`, `endpoints`',
  }),
  urls: setting(urlList, {
    optional: true,
    resolvedInto: 'upstreams', // into each upstream's `endpoints`
    docDefault: '—',
    doc: 'several endpoints of this registry, most trusted first: short for `endpoints` with only `url`; see [Endpoint pools](#endpoint-pools)',
  }),
  endpoints: setting(endpointList, {
    optional: true,
    docDefault: '—',
    doc: 'the endpoints of this registry, most trusted first, each with its own credentials and realms; see [Endpoint pools](#endpoint-pools)',
  }),
  hosts: setting(v.listOf(v.hostName, { unique: true }), {
    default: [],
    doc:
      '`Host` header values routed to this upstream (lower-cased); an entry without a port matches the host with any port. ' +
      'A `Host` not listed anywhere is not a registry name: the request goes by the path (prefix or default upstream)',
  }),
  libraryPrefix: setting(v.boolean, {
    default: false,
    docDefault: '`true` for docker.io, else `false`',
    doc: "one-component repository names get `library/` (Docker Hub's official images)",
  }),
  credentials: setting(credentials, {
    optional: true,
    docDefault: 'none',
    doc: 'see [Credentials](#credentials); with `urls` or `endpoints`, give them per endpoint instead',
  }),
  private: setting(v.boolean, {
    optional: true,
    docDefault: '`true` with `credentials`, else `false`',
    doc:
      'content fetched through this upstream is served from the cache only through it, and only for a repository it confirmed ' +
      'holds it; see [Private content](#private-content)',
  }),
  offline: setting(v.boolean, {
    inherits: 'offline.enabled',
    doc: 'this upstream is never contacted: only what is cached from it is served (see `offline.enabled`)',
  }),
  tagTtl: setting(v.duration, {
    inherits: 'tagTtl',
    doc: "how long a tag's manifest is served from cache before it is revalidated upstream",
  }),
  tagTtlRules: setting(v.listOf(ttlRule), {
    default: [],
    doc: 'per-tag TTLs; the first matching rule wins, else `tagTtl` (see below)',
  }),
  negativeTtl: setting(v.duration, {
    inherits: 'negativeTtl',
    doc: 'how long a 404 for a tag or a manifest is answered without asking again; `0` disables. See [Negative cache](#negative-cache)',
  }),
  serveStaleOn: setting(v.listOf(staleOnStatus, { unique: true }), {
    default: [],
    doc:
      'upstream answers to a revalidation that serve the cached tag instead, like a failure does (stale-if-error): an image ' +
      'deleted (`404`) or made private (`401`, `403`) upstream keeps being served. See [Stale copies](#stale-copies)',
  }),
  quotaReserve: setting(v.integer(0), {
    default: 10,
    doc:
      'when the pull quota the upstream reports (`ratelimit-remaining`) of the best credential is below this, cached tags are ' +
      'not revalidated (up to `quotaMaxStale`), so the rest goes to images not cached; `0` disables. See [Pull quota](#pull-quota)',
  }),
  quotaMaxStale: setting(v.duration, {
    default: '1d',
    doc: 'the oldest a tag may be (since the upstream last confirmed it) and still be served unrevalidated while the quota is low',
  }),
  maxConcurrent: setting(v.integer(0), {
    default: 0,
    docDefault: '`0` (no limit)',
    doc: 'requests to this upstream in flight at once (a blob download counts until its body ends); others wait in order',
  }),
  maxRequestsPerSecond: setting(v.integer(0), {
    default: 0,
    docDefault: '`0` (no limit)',
    doc: 'requests started per second to this upstream (retries included); others wait in order',
  }),
  maxMbps: setting(v.number(0), {
    default: 0,
    docDefault: '`0` (no limit)',
    doc: 'megabits per second of blob bodies from this upstream, all downloads together (`100`, `2.5`); the link is read no faster',
  }),
  maxQueueWait: setting(v.duration, {
    default: '30s',
    doc:
      'longest a request waits for `maxConcurrent` or `maxRequestsPerSecond`; then it fails with `TOOMANYREQUESTS` (429) and ' +
      '`Retry-After`, or a cached tag is served stale. See [Limits](#limits)',
  }),
  allow: setting(v.listOf(v.glob), {
    default: [],
    docDefault: '`[]` (all allowed)',
    doc: 'repositories that may be pulled through this upstream',
  }),
  deny: setting(v.listOf(v.glob), { default: [], doc: 'repositories that may not; `deny` wins over `allow`' }),
  realms: setting(v.listOf(v.hostName, { unique: true }), {
    default: [],
    doc:
      "extra hosts allowed as token realms, besides the upstream's own registrable domain (CDN redirect hosts are not realms); " +
      'an entry without a port allows any port of that host; see [Token realms](#token-realms)',
  }),
  allowedNetworks: setting(v.listOf(v.network, { unique: true }), {
    default: [],
    doc:
      "address ranges this upstream's redirect targets and token realm may reach although they are loopback, link-local, private or " +
      'unique-local (`10.20.0.0/16`, `fd00::/8`, or one address); see [Redirect targets](#redirect-targets-and-the-address-policy)',
  }),
  proxy: setting(v.proxy, {
    optional: true,
    docDefault: 'from the environment',
    doc:
      'the outbound proxy for everything sent for this upstream (registry, token realm, blob redirects): ' +
      '`http://[user:password@]host:port`, `https://…` or `socks5://[user:password@]host:port`; `none` goes direct. ' +
      'Unset: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as Go programs read them; see [Outbound proxies](#outbound-proxies)',
  }),
} as const

/** The fields that say where an upstream is; one source gives them all (resolveUpstreams). */
const POOL_FIELDS = new Set(['url', 'urls', 'endpoints'])

/** One resolved upstream (built-in defaults merged in). */
export type UpstreamConfig = Resolved<typeof UPSTREAM_FIELDS>

export interface WellKnownUpstream {
  url: string
  libraryPrefix: boolean
}

/** Built-in registries, included unless `wellKnownUpstreams: false`; a file entry of the same name merges over them. */
export const WELL_KNOWN_UPSTREAMS: Readonly<Record<string, WellKnownUpstream>> = {
  'docker.io': { url: 'https://registry-1.docker.io', libraryPrefix: true },
  'ghcr.io': { url: 'https://ghcr.io', libraryPrefix: false },
  'quay.io': { url: 'https://quay.io', libraryPrefix: false },
  'registry.k8s.io': { url: 'https://registry.k8s.io', libraryPrefix: false },
  'gcr.io': { url: 'https://gcr.io', libraryPrefix: false },
  'nvcr.io': { url: 'https://nvcr.io', libraryPrefix: false },
  'mcr.microsoft.com': { url: 'https://mcr.microsoft.com', libraryPrefix: false },
  'public.ecr.aws': { url: 'https://public.ecr.aws', libraryPrefix: false },
}

/** The built-in registry of that name; own keys only, as `constructor` is a valid upstream name. */
function builtIn(name: string): WellKnownUpstream | undefined {
  return Object.hasOwn(WELL_KNOWN_UPSTREAMS, name) ? WELL_KNOWN_UPSTREAMS[name] : undefined
}

type Entry = Record<string, unknown> & { name: string; enabled?: boolean }
type Assignment = { name: string; url: string }

/** The `upstreams:` list as the file gives it (an empty `upstreams:` is allowed). */
export const upstreamEntries: ValueType<Entry[] | null> = {
  doc: 'list',
  schema: (sc: SchemaContext) => z.array(objectSchema(UPSTREAM_FIELDS, sc) as z.ZodType<Entry>).nullable(),
  // Given resolved upstreams (config check): every field but `enabled`, and empty lists left out for brevity.
  format: (list) =>
    (list ?? []).map((u) => {
      const out: Record<string, unknown> = {}
      for (const [k, d] of entries(UPSTREAM_FIELDS)) {
        const x = u[k]
        // A pool's `url` is its first endpoint: printing both would not load back.
        if (k === 'url' && u.endpoints !== undefined) continue
        if (x !== undefined && !(Array.isArray(x) && x.length === 0)) out[k] = d.type.format(x)
      }
      return out
    }),
  redact: (list) =>
    (list ?? []).map((u) => {
      const copy = { ...u }
      for (const [k, d] of entries(UPSTREAM_FIELDS)) if (d.type.redact && copy[k] !== undefined) copy[k] = d.type.redact(copy[k])
      return copy
    }),
}

/** `NAME=URL` from the environment and flags. */
export const upstreamAssignments = v.listOf(
  v.textual({ doc: '`NAME=URL`', what: 'NAME=URL', parse: parseUpstreamAssignment }) as ValueType<Assignment>,
)

/**
 * The resolved list: the built-ins first (unless `wellKnownUpstreams: false`), then the file's other entries
 * in order, then upstreams only the environment or flags name; disabled entries left out unless those give
 * them a URL. The flags' URL for a name wins over the environment's, which wins over the entry's.
 */
export function resolveUpstreams(list: Entry[] | null, ctx: ResolveContext): UpstreamConfig[] {
  const overrides = new Map<string, Assignment>()
  for (const a of ctx.overlays as Assignment[]) overrides.set(a.name, a)
  const byName = new Map((list ?? []).map((e) => [e.name, e]))
  const names = ctx.get('wellKnownUpstreams') === false ? [] : Object.keys(WELL_KNOWN_UPSTREAMS)
  for (const n of [...byName.keys(), ...overrides.keys()]) if (!names.includes(n)) names.push(n)
  const out: UpstreamConfig[] = []
  for (const name of names) {
    const entry = byName.get(name)
    if (entry?.enabled === false && !overrides.has(name)) continue
    const sources = [overrides.get(name), entry, builtIn(name), { name }]
    const u: Record<string, unknown> = {}
    for (const [k, d] of entries(UPSTREAM_FIELDS)) {
      if (d.resolvedInto !== undefined || POOL_FIELDS.has(k)) continue
      const given = sources.map((s) => getPath(s, k)).find((x) => x !== undefined)
      const x = given !== undefined ? structuredClone(given) : d.inherits !== undefined ? ctx.get(d.inherits) : defaultOf(d)
      if (x === undefined && d.optional) continue
      if (x === undefined) throw new Error(`internal: upstream ${name} has no ${k}`) // excluded by checkUpstreamEntries
      u[k] = x
    }
    // Where the upstream is comes whole from the first source that says it: a flag's URL replaces a file's pool.
    const pool = resolvePool(
      sources.find((s) => s !== undefined && [...POOL_FIELDS].some((f) => getPath(s, f) !== undefined)) as
        Record<string, unknown> | undefined,
      u as { realms: string[]; allowedNetworks: string[] },
    )
    if (!pool) throw new Error(`internal: upstream ${name} has no url`) // excluded by checkUpstreamEntries
    u.url = pool.url
    if (pool.endpoints) u.endpoints = pool.endpoints
    out.push(u as UpstreamConfig)
  }
  return out
}

/**
 * Checks done on the raw file (so they run even when other fields are invalid): duplicate names, entries
 * that are not built in without a url. Returns the names of the upstreams that will be enabled.
 */
export function checkUpstreamEntries(raw: Record<string, unknown>, overlayNames: Set<string>, problems: string[]): Set<string> {
  const list = Array.isArray(raw.upstreams) ? raw.upstreams : []
  const enabled = new Set<string>(raw.wellKnownUpstreams === false ? [] : Object.keys(WELL_KNOWN_UPSTREAMS))
  const firstIndex = new Map<string, number>()
  list.forEach((e, i) => {
    if (!isRecord(e) || typeof e.name !== 'string') return
    const prev = firstIndex.get(e.name)
    if (prev !== undefined) {
      problems.push(`upstreams[${i}].name: duplicate upstream "${e.name}" (also upstreams[${prev}])`)
      return
    }
    firstIndex.set(e.name, i)
    if (e.enabled === false && !overlayNames.has(e.name)) {
      enabled.delete(e.name)
      return
    }
    enabled.add(e.name)
    const where = [...POOL_FIELDS].filter((f) => e[f] !== undefined)
    if (where.length === 0 && !builtIn(e.name) && !overlayNames.has(e.name)) {
      problems.push(
        `upstreams[${i}].url: required for an upstream that is not built in (built in: ${Object.keys(WELL_KNOWN_UPSTREAMS).join(', ')})`,
      )
    }
    if (where.length > 1) problems.push(`upstreams[${i}].${where[1]}: give only one of ${where.join(', ')}`)
    // Credentials for one registry must not reach a mirror of it someone else runs: each endpoint has its own.
    if (e.credentials !== undefined && where.some((f) => f !== 'url')) {
      problems.push(
        `upstreams[${i}].credentials: with ${where.find((f) => f !== 'url')}, give credentials per endpoint (endpoints[].credentials)`,
      )
    }
  })
  for (const n of overlayNames) enabled.add(n)
  return enabled
}
