/**
 * Every setting, declared once.
 *
 * To add a setting, add one `setting(TYPE, { … })` line to SETTINGS below (or to UPSTREAM_FIELDS in
 * upstreams.ts for a field of each upstream), then use it: `config.section.name`. From the declaration,
 * and from nothing else, it then appears in:
 *   - the `Config` type (its resolved value; `optional: true` makes it absent when not given),
 *   - the file schema (strict: unknown keys are errors; the problems are the value type's),
 *   - the environment (`env`: empty counts as unset) and the flags (`flag` + `arg`: `CliFlags`, `--help`),
 *     with flags > environment > file > default,
 *   - `config check` (the value type's format, its secrets redacted by `redactConfig`),
 *   - the tables of docs/configuration.md (`npm run docs` writes them; a test fails while they differ;
 *     a new section of several settings gets a table of its own, and the script says where it is missing).
 * TYPE is a value type from values.ts (duration, size, listenAddress, httpUrl, boolean, integer(min),
 * listOf(…), …); a new kind of value is added there. The path's dots make the sections of the file.
 *
 * The order matters: it is the order of the file schema, of the problems from the environment and from
 * the flags, of `--help`, of `config check` and of the docs' rows; and a resolve() may read (ctx.get) only
 * settings declared before it.
 */
import { availableParallelism } from 'node:os'
import { resolve as resolvePath } from 'node:path'
import { autoMaxSizeFor } from './auto-size.js'
import { setting, type Resolved } from './declare.js'
import { accessRule } from './access-rules.js'
import { CLUSTER_SETTINGS } from './cluster-settings.js'
import { FRONT_SETTINGS } from './front-settings.js'
import { STORAGE_SETTINGS } from './storage-settings.js'
import { resolveUpstreams, upstreamAssignments, upstreamEntries } from './upstreams.js'
import * as v from './values.js'

export const SETTINGS = {
  listen: setting(v.listenAddress, {
    default: '0.0.0.0:5000',
    env: 'REGMIRROR_LISTEN',
    flag: 'listen',
    arg: 'HOST:PORT',
    help: 'address to listen on, e.g. 0.0.0.0:5000, [::]:5000, :5000',
    doc: 'address the HTTP server listens on',
  }),
  dataDir: setting(v.path, {
    default: './data',
    env: 'REGMIRROR_DATA',
    flag: 'data',
    arg: 'DIR',
    help: 'data directory for the cache',
    doc: 'cache directory; a relative path is resolved against the working directory',
    // Resolved: absolute.
    resolve: (dir, ctx): string => resolvePath(ctx.cwd, dir),
  }),
  'cache.maxSize': setting(v.sizeOrAuto, {
    default: 'auto',
    env: 'REGMIRROR_MAX_SIZE',
    flag: 'max-size',
    arg: 'SIZE',
    help: 'cache size bound, e.g. 50GiB, or auto',
    doc:
      'bound of the on-disk cache (LRU eviction above it). `auto` = min(50GiB, 80% of the total size of the filesystem holding ' +
      '`dataDir`, measured on its nearest existing ancestor)',
    // Resolved: bytes, `auto` measured on the (resolved) dataDir.
    resolve: (size, ctx): number => (size === 'auto' ? autoMaxSizeFor(ctx.get('dataDir') as string) : size),
  }),
  'cache.pins': setting(v.listOf(v.imageRef, { unique: true }), {
    default: [],
    flag: 'pin',
    arg: 'REF',
    append: true,
    help: 'keep this image in the cache (UPSTREAM/REPO:TAG or @sha256:...)',
    doc:
      'images never evicted: `UPSTREAM/REPO:TAG`, `UPSTREAM/REPO@sha256:DIGEST` or both, e.g. `docker.io/library/alpine:3.20`; ' +
      '`UPSTREAM` must be an enabled upstream',
  }),
  'cache.touchInterval': setting(v.duration, {
    default: '60s',
    doc: "minimum time between two updates of an entry's last-access time",
  }),
  'log.level': setting(v.logLevel, {
    default: 'info',
    env: 'REGMIRROR_LOG_LEVEL',
    flag: 'log-level',
    arg: 'LEVEL',
    help: 'fatal, error, warn, info, debug, trace or silent',
    doc: 'log verbosity (env and flag are case-insensitive)',
  }),
  'metadata.redis': setting(v.redisUrl, {
    optional: true,
    docDefault: 'none (local only)',
    env: 'REGMIRROR_REDIS',
    flag: 'redis',
    arg: 'URL',
    help: 'redis:// URL of a shared metadata store',
    doc:
      'shared store for several replicas: tag resolutions and upstream tokens (keys under `metadata.prefix`, tokens with their ' +
      'lifetime as TTL, tag records for 7 days after the upstream last confirmed them); if Redis is unreachable each operation ' +
      'gives up after 1 s and the replica keeps working from its disk links; a password in the URL is redacted by `config check`',
  }),
  'metadata.prefix': setting(v.string, { default: 'regmirror', doc: 'key prefix in Redis' }),
  defaultUpstream: setting(v.upstreamName, {
    default: 'docker.io',
    env: 'REGMIRROR_DEFAULT_UPSTREAM',
    flag: 'default-upstream',
    arg: 'NAME',
    help: 'upstream used when a request names none',
    doc: "upstream used when a request names none (e.g. the Docker daemon's `registry-mirrors`); must name an enabled upstream",
  }),
  wellKnownUpstreams: setting(v.boolean, {
    default: true,
    resolvedInto: 'upstreams',
    shownAs: false, // config check lists every upstream
    doc: 'include the built-in upstreams below; when `false` only the upstreams listed (in the file, env or flags) exist',
  }),
  tagTtl: setting(v.duration, {
    default: '5m',
    resolvedInto: 'upstreams', // the default of each upstream's tagTtl
    env: 'REGMIRROR_TAG_TTL',
    flag: 'tag-ttl',
    arg: 'DURATION',
    help: 'default tag freshness, e.g. 5m',
    doc: 'default tag freshness for every upstream that has no `tagTtl` of its own',
  }),
  negativeTtl: setting(v.duration, {
    default: '30s',
    resolvedInto: 'upstreams', // the default of each upstream's negativeTtl
    doc: 'default time a 404 for a tag or manifest is remembered, for every upstream that has no `negativeTtl` of its own; `0` disables',
  }),
  'offline.enabled': setting(v.boolean, {
    default: false,
    resolvedInto: 'upstreams', // the default of each upstream's `offline`
    env: 'REGMIRROR_OFFLINE',
    flag: 'offline',
    help: 'never contact any upstream: serve only what is cached (air-gapped sites)',
    doc:
      'never dial out: tags are answered from the cache whatever their age, and anything not cached is `MANIFEST_UNKNOWN` / ' +
      "`BLOB_UNKNOWN` (404) saying the mirror is offline; the default of every upstream's `offline`. See [Air-gapped sites](#air-gapped-sites)",
  }),
  upstreams: setting(upstreamEntries, {
    default: [],
    docDefault: 'built-ins',
    env: 'REGMIRROR_UPSTREAMS',
    flag: 'upstream',
    arg: 'NAME=URL',
    overlay: upstreamAssignments,
    help: 'add an upstream or override its URL',
    doc: 'see [Upstreams](#upstreams)',
    // Resolved: the enabled upstreams, built-ins and NAME=URL overrides merged in (upstreams.ts), not the entries.
    resolve: resolveUpstreams,
  }),
  'timeouts.connect': setting(v.duration, { default: '10s', doc: 'upstream TCP/TLS connect timeout' }),
  'timeouts.headers': setting(v.duration, { default: '30s', doc: 'upstream response headers timeout' }),
  'timeouts.bodyIdle': setting(v.duration, { default: '30s', doc: 'upstream body: longest pause between two chunks' }),
  'timeouts.shutdown': setting(v.duration, { default: '30s', doc: 'on SIGTERM, how long in-flight requests may finish' }),
  'retries.attempts': setting(v.integer(0), {
    default: 3,
    doc:
      'tries of one upstream request, the first included (`0` and `1` both mean no retry); only a connection error, a timeout or a ' +
      '502/503/504 answer is retried',
  }),
  'retries.resumeAttempts': setting(v.integer(0), {
    default: 5,
    doc:
      'Range resumes of a broken blob download *without progress*: a resume that received bytes resets the count, so a link that ' +
      'breaks every few MiB still completes a large blob, while an upstream stuck at one byte gives up after this many tries; ' +
      '`0` disables resuming',
  }),
  'retries.backoff': setting(v.duration, { default: '200ms', doc: 'base of the exponential backoff between retries' }),
  'offline.failureThreshold': setting(v.integer(1), {
    default: 5,
    doc:
      'consecutive upstream failures before the upstream is treated as down (cache only); in an endpoint pool, the last endpoint ' +
      'up is held to it, the others are set aside at their first failure',
  }),
  'offline.coolDown': setting(v.duration, {
    default: '30s',
    doc: 'how long it (or an endpoint set aside) stays down before one request probes it',
  }),
  'server.headersTimeout': setting(v.duration, {
    default: '20s',
    doc:
      "Node `server.headersTimeout`: time to receive a request's headers; a client that never finishes them is disconnected " +
      '(checked at a quarter of this interval, at most every second)',
  }),
  'server.requestTimeout': setting(v.duration, {
    default: '0',
    docDefault: '`0` (none)',
    doc: 'Node `server.requestTimeout`; none by default because blob downloads can be long',
  }),
  'server.keepAliveTimeout': setting(v.duration, {
    default: '65s',
    doc: 'idle keep-alive connection timeout (above common load-balancer idle timeouts)',
  }),
  'server.idleTimeout': setting(v.duration, {
    default: '5m',
    doc:
      'a connection on which nothing moves in either direction for this long is closed (stuck clients, half-open sockets); ' +
      '`0` disables',
  }),
  'server.maxHeaderSize': setting(v.size, { default: 16384, doc: 'largest request header block in bytes' }),
  'server.tls.cert': setting(v.path, {
    optional: true,
    docDefault: 'none (no TLS listener)',
    env: 'REGMIRROR_TLS_CERT',
    flag: 'tls-cert',
    arg: 'FILE',
    help: 'TLS certificate (PEM, chain included): serve HTTPS with HTTP/2 too',
    doc:
      'certificate chain (PEM) of a second listener that speaks TLS 1.2+ with HTTP/2 and HTTP/1.1 (ALPN); needs `server.tls.key`. ' +
      'Both files are read again when they change (cert-manager, certbot), without dropping connections; a new pair that does ' +
      'not load keeps the old one and says why in the log',
    resolve: (p: string | undefined, ctx): string | undefined => (p === undefined ? undefined : resolvePath(ctx.cwd, p)),
  }),
  'server.tls.key': setting(v.path, {
    optional: true,
    docDefault: 'none',
    env: 'REGMIRROR_TLS_KEY',
    flag: 'tls-key',
    arg: 'FILE',
    help: 'private key (PEM) of --tls-cert',
    doc: 'private key (PEM) of `server.tls.cert`',
    resolve: (p: string | undefined, ctx): string | undefined => (p === undefined ? undefined : resolvePath(ctx.cwd, p)),
  }),
  'server.tls.listen': setting(v.listenAddress, {
    default: '0.0.0.0:5443',
    env: 'REGMIRROR_TLS_LISTEN',
    flag: 'tls-listen',
    arg: 'HOST:PORT',
    help: 'address of the TLS listener',
    doc: 'address of the TLS listener (when a certificate is given); the plain listener (`listen`) stays',
  }),

  'server.reloadInterval': setting(v.duration, {
    default: '10s',
    doc: 'how often the TLS certificate and key and the htpasswd file are checked for a change (they are read again when they do)',
  }),
  'server.http2.maxConcurrentStreams': setting(v.integer(1), {
    default: 250,
    doc:
      'streams one HTTP/2 connection may have open at once; together with the stream-reset, SETTINGS and PING limits of Node ' +
      "(nghttp2) it keeps one client's flood from starving the others",
  }),
  ...FRONT_SETTINGS,
  'server.workers': setting(v.integer(1), {
    optional: true,
    docDefault: "the machine's available parallelism (`os.availableParallelism()`)",
    env: 'REGMIRROR_WORKERS',
    flag: 'workers',
    arg: 'N',
    help: 'worker processes sharing one cache (default: one per core; 1 = a single process)',
    doc:
      'worker processes that all accept on the listeners and share one cache, one download per blob, the tag records and ' +
      'tokens (docs/architecture.md, "Workers"); `1` runs everything in one process',
    // Resolved: a count, measured on this machine when not given.
    resolve: (n: number | undefined): number => n ?? availableParallelism(),
  }),
  'auth.htpasswd': setting(v.path, {
    optional: true,
    docDefault: 'none (no authentication)',
    env: 'REGMIRROR_HTPASSWD',
    flag: 'htpasswd',
    arg: 'FILE',
    help: 'require credentials from this htpasswd file (bcrypt entries)',
    doc:
      'clients must authenticate with HTTP Basic against this file (`htpasswd -B`: bcrypt entries, as CNCF distribution and ' +
      'nginx use); read again when it changes. Networks in `auth.anonymous.cidrs` need no credentials',
    resolve: (p: string | undefined, ctx): string | undefined => (p === undefined ? undefined : resolvePath(ctx.cwd, p)),
  }),
  'auth.realm': setting(v.string, { default: 'regmirror', doc: 'the realm of the `WWW-Authenticate: Basic` challenge' }),
  'auth.anonymous.cidrs': setting(v.listOf(v.network), {
    default: [],
    env: 'REGMIRROR_ANONYMOUS_CIDRS',
    doc:
      'client networks allowed without credentials (the Docker daemon never sends credentials to a `registry-mirrors` entry); ' +
      'access rules still apply',
  }),
  'auth.rules': setting(v.listOf(accessRule), {
    default: [],
    doc: 'who may pull what: see [Access rules](#access-rules)',
  }),
  ...CLUSTER_SETTINGS,
  ...STORAGE_SETTINGS,
  'search.enabled': setting(v.boolean, {
    default: true,
    env: 'REGMIRROR_SEARCH',
    doc: '`docker search MIRROR/term` (`/v1/_ping`, `/v1/search`); `false` answers them 404. See [Search and catalog](#search-and-catalog)',
  }),
  'search.upstream': setting(v.httpUrl, {
    default: 'https://index.docker.io',
    env: 'REGMIRROR_SEARCH_UPSTREAM',
    flag: 'search-upstream',
    arg: 'URL',
    help: 'where /v1/search is forwarded (Docker Hub index)',
    doc:
      "base URL of the search index `/v1/search` is forwarded to (Docker Hub's by default); when it cannot be reached (or the " +
      'mirror is offline) the answer is the repositories this mirror holds whose names contain the term',
  }),
  'search.cacheTtl': setting(v.duration, {
    default: '10m',
    doc: 'how long one search answer of the upstream is reused (memory, bounded); `0` asks every time',
  }),
  'referrers.cacheTtl': setting(v.duration, {
    default: '30s',
    doc:
      'how long a referrers list is answered from memory before the upstream is asked again; the last list is also kept on disk and ' +
      'served when the upstream fails or the mirror is offline',
  }),
  'ui.enabled': setting(v.boolean, {
    default: true,
    env: 'REGMIRROR_UI',
    doc:
      'the status page at `/` and its data at `/api/status` (upstreams, cache, downloads in progress, recent pulls, pins); ' +
      'behind `auth.htpasswd` when that is set. `false`: both answer 404. See [Status page](#status-page)',
  }),
} as const

/** Not a setting of the file: where the file is. */
export const CONFIG_FILE = setting(v.path, {
  env: 'REGMIRROR_CONFIG',
  flag: 'config',
  arg: 'FILE',
  help: 'YAML configuration file',
  doc: 'the YAML file to read (relative to the working directory)',
})

/**
 * Not a setting of the file either: a file read only if it exists. The container image sets it, so that a file
 * mounted at /etc/regmirror/regmirror.yaml is read and a container without one starts on defaults and env.
 */
export const DEFAULT_CONFIG_FILE = setting(v.path, {
  env: 'REGMIRROR_DEFAULT_CONFIG',
  doc:
    'a YAML file read only if it exists, when neither `--config` nor `REGMIRROR_CONFIG` names one (the container image ' +
    'sets `/etc/regmirror/regmirror.yaml`); a file that exists but cannot be read is an error',
})

/** The resolved configuration other modules consume: every setting of SETTINGS but the `resolvedInto` ones. */
export type Config = Resolved<typeof SETTINGS>
