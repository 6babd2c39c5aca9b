/**
 * Loading the configuration: YAML file, then environment variables, then command-line flags (each layer
 * overrides the one before), validated all at once. Every problem found is reported in one ConfigError.
 */
import { existsSync, readFileSync, statfsSync } from 'node:fs'
import { dirname, resolve as resolvePath } from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import type { CliFlags } from './args.js'
import { parseDuration, parseSize } from './durations.js'
import { ConfigError } from './errors.js'
import {
  DEFAULTS,
  WELL_KNOWN_UPSTREAMS,
  fileSchema,
  formatIssues,
  parseHttpUrl,
  parseListen,
  parseLogLevel,
  parsePinRef,
  parseRedisUrl,
  parseUpstreamAssignment,
  parseUpstreamName,
  type Config,
  type FileConfig,
  type LogLevel,
  type UpstreamConfig,
  type UpstreamEntry,
} from './schema.js'

export { ConfigError } from './errors.js'
export { parseDuration, parseSize } from './durations.js'
export type { Config, Credentials, TtlRule, UpstreamConfig } from './schema.js'

type Env = Record<string, string | undefined>

/** Overrides from one layer above the file (environment or flags). */
interface Overlay {
  listen?: { host: string; port: number }
  dataDir?: string
  maxSize?: number | 'auto'
  logLevel?: LogLevel
  redis?: string
  defaultUpstream?: string
  tagTtl?: number
  upstreams: { name: string; url: string }[]
  pins: string[]
}

/**
 * `auto` cache size: min(50GiB, 80% of the filesystem's total size). Pure, for testing;
 * see filesystemSize() for the measurement.
 */
export function autoMaxSize(filesystemTotalBytes: number): number {
  return Math.min(DEFAULTS.maxSizeCap, Math.floor(filesystemTotalBytes * DEFAULTS.maxSizeFraction))
}

/** Total size in bytes of the filesystem holding `dir` (or its nearest existing ancestor); undefined if unknown. */
export function filesystemSize(dir: string): number | undefined {
  let d = resolvePath(dir)
  while (!existsSync(d)) {
    const up = dirname(d)
    if (up === d) break
    d = up
  }
  try {
    const s = statfsSync(d)
    return Number(s.blocks) * Number(s.bsize)
  } catch {
    return undefined
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim()
}

/** Parses env or flag values into an overlay; `names` gives the problem prefix for each field. */
function parseOverlay(
  values: {
    listen?: string
    dataDir?: string
    maxSize?: string
    logLevel?: string
    redis?: string
    defaultUpstream?: string
    tagTtl?: string
    upstreams?: string[]
    pins?: string[]
  },
  // Only the keys a layer can set need a name (the environment sets no pins).
  names: { [K in keyof typeof values]?: string },
  problems: string[],
): Overlay {
  const o: Overlay = { upstreams: [], pins: [] }
  const attempt = <K extends keyof typeof values>(key: K, fn: () => void): void => {
    try {
      fn()
    } catch (e) {
      problems.push(`${names[key] ?? key}: ${(e as Error).message}`)
    }
  }
  const v = values
  if (v.listen !== undefined) attempt('listen', () => (o.listen = parseListen(v.listen!)))
  if (v.dataDir !== undefined) o.dataDir = v.dataDir
  if (v.maxSize !== undefined) attempt('maxSize', () => (o.maxSize = v.maxSize === 'auto' ? 'auto' : parseSize(v.maxSize!)))
  if (v.logLevel !== undefined) attempt('logLevel', () => (o.logLevel = parseLogLevel(v.logLevel!)))
  if (v.redis !== undefined) attempt('redis', () => (o.redis = parseRedisUrl(v.redis!)))
  if (v.defaultUpstream !== undefined) {
    attempt('defaultUpstream', () => (o.defaultUpstream = parseUpstreamName(v.defaultUpstream!)))
  }
  if (v.tagTtl !== undefined) attempt('tagTtl', () => (o.tagTtl = parseDuration(v.tagTtl!)))
  for (const u of v.upstreams ?? []) attempt('upstreams', () => o.upstreams.push(parseUpstreamAssignment(u)))
  for (const p of v.pins ?? []) attempt('pins', () => o.pins.push(parsePinRef(p).ref))
  return o
}

function envOverlay(env: Env, problems: string[]): Overlay {
  return parseOverlay(
    {
      listen: nonEmpty(env.REGMIRROR_LISTEN),
      dataDir: nonEmpty(env.REGMIRROR_DATA),
      maxSize: nonEmpty(env.REGMIRROR_MAX_SIZE),
      logLevel: nonEmpty(env.REGMIRROR_LOG_LEVEL),
      redis: nonEmpty(env.REGMIRROR_REDIS),
      defaultUpstream: nonEmpty(env.REGMIRROR_DEFAULT_UPSTREAM),
      tagTtl: nonEmpty(env.REGMIRROR_TAG_TTL),
      upstreams: (env.REGMIRROR_UPSTREAMS ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    },
    {
      listen: 'REGMIRROR_LISTEN',
      dataDir: 'REGMIRROR_DATA',
      maxSize: 'REGMIRROR_MAX_SIZE',
      logLevel: 'REGMIRROR_LOG_LEVEL',
      redis: 'REGMIRROR_REDIS',
      defaultUpstream: 'REGMIRROR_DEFAULT_UPSTREAM',
      tagTtl: 'REGMIRROR_TAG_TTL',
      upstreams: 'REGMIRROR_UPSTREAMS',
    },
    problems,
  )
}

function flagOverlay(flags: CliFlags, problems: string[]): Overlay {
  return parseOverlay(
    {
      listen: flags.listen,
      dataDir: flags.data,
      maxSize: flags.maxSize,
      logLevel: flags.logLevel,
      redis: flags.redis,
      defaultUpstream: flags.defaultUpstream,
      tagTtl: flags.tagTtl,
      upstreams: flags.upstream,
      pins: flags.pin,
    },
    {
      listen: '--listen',
      dataDir: '--data',
      maxSize: '--max-size',
      logLevel: '--log-level',
      redis: '--redis',
      defaultUpstream: '--default-upstream',
      tagTtl: '--tag-ttl',
      upstreams: '--upstream',
      pins: '--pin',
    },
    problems,
  )
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Cross-field checks done on the raw input (so they run even when other fields are invalid):
 * duplicate upstream names, custom upstreams without url, defaultUpstream, pins naming unknown upstreams.
 */
function crossChecks(raw: unknown, env: Overlay, flags: Overlay, problems: string[]): void {
  const r = isRecord(raw) ? raw : {}
  const entries = Array.isArray(r.upstreams) ? r.upstreams : []
  const overlayUrls = new Set([...env.upstreams, ...flags.upstreams].map((u) => u.name))
  const enabled = new Set<string>(r.wellKnownUpstreams === false ? [] : Object.keys(WELL_KNOWN_UPSTREAMS))
  const firstIndex = new Map<string, number>()
  entries.forEach((e, i) => {
    if (!isRecord(e) || typeof e.name !== 'string') return
    const prev = firstIndex.get(e.name)
    if (prev !== undefined) {
      problems.push(`upstreams[${i}].name: duplicate upstream "${e.name}" (also upstreams[${prev}])`)
      return
    }
    firstIndex.set(e.name, i)
    if (e.enabled === false && !overlayUrls.has(e.name)) {
      enabled.delete(e.name)
      return
    }
    enabled.add(e.name)
    if (e.url === undefined && !(e.name in WELL_KNOWN_UPSTREAMS) && !overlayUrls.has(e.name)) {
      problems.push(
        `upstreams[${i}].url: required for an upstream that is not built in (built in: ${Object.keys(WELL_KNOWN_UPSTREAMS).join(', ')})`,
      )
    }
  })
  for (const n of overlayUrls) enabled.add(n)

  const du = flags.defaultUpstream ?? env.defaultUpstream ?? r.defaultUpstream ?? DEFAULTS.defaultUpstream
  if (typeof du === 'string') {
    const where = flags.defaultUpstream ? '--default-upstream' : env.defaultUpstream ? 'REGMIRROR_DEFAULT_UPSTREAM' : 'defaultUpstream'
    if (!enabled.has(du)) {
      problems.push(`${where}: upstream "${du}" is not configured or is disabled (enabled: ${[...enabled].join(', ') || 'none'})`)
    }
  }

  const checkPin = (where: string, p: unknown): void => {
    if (typeof p !== 'string') return
    let up: string
    try {
      up = parsePinRef(p).upstream
    } catch {
      return // reported elsewhere
    }
    if (!enabled.has(up)) problems.push(`${where}: upstream "${up}" of ${p} is not configured or is disabled`)
  }
  const pins = isRecord(r.cache) && Array.isArray(r.cache.pins) ? r.cache.pins : []
  pins.forEach((p, i) => checkPin(`cache.pins[${i}]`, p))
  for (const p of flags.pins) checkPin('--pin', p)
}

function buildUpstream(
  name: string,
  entry: UpstreamEntry | undefined,
  overrideUrl: string | undefined,
  defaultTagTtl: number,
): UpstreamConfig {
  const wk = WELL_KNOWN_UPSTREAMS[name]
  const url = overrideUrl ?? entry?.url ?? wk?.url
  if (url === undefined) throw new Error(`internal: upstream ${name} has no url`) // excluded by crossChecks
  const u: UpstreamConfig = {
    name,
    url,
    hosts: [...new Set(entry?.hosts ?? [])],
    libraryPrefix: entry?.libraryPrefix ?? wk?.libraryPrefix ?? false,
    tagTtl: entry?.tagTtl ?? defaultTagTtl,
    tagTtlRules: (entry?.tagTtlRules ?? []).map((r) => ({ pattern: r.pattern, ttl: r.ttl })),
    allow: [...(entry?.allow ?? [])],
    deny: [...(entry?.deny ?? [])],
    realms: [...new Set(entry?.realms ?? [])],
    allowedNetworks: [...new Set(entry?.allowedNetworks ?? [])],
  }
  const c = entry?.credentials
  if (c && (c.username !== undefined || c.password !== undefined || c.token !== undefined)) u.credentials = { ...c }
  return u
}

export interface ResolveOptions {
  /** Environment variables; resolveConfig uses only what is passed here (default: none). */
  env?: Env
  flags?: CliFlags
  /** Base for relative paths (dataDir, secret files); default process.cwd(). */
  cwd?: string
}

/**
 * Resolves a configuration from an in-memory object (the parsed YAML file), environment and flags.
 * Synchronous (secret files are read with readFileSync). Throws ConfigError listing every problem.
 */
export function resolveConfig(raw: unknown, opts: ResolveOptions = {}): Config {
  return resolveWithProblems(raw, opts, [])
}

function resolveWithProblems(raw: unknown, opts: ResolveOptions, problems: string[]): Config {
  const env = opts.env ?? {}
  const cwd = opts.cwd ?? process.cwd()
  const flagsIn = opts.flags ?? {}
  if (raw === null || raw === undefined) raw = {}

  let file: FileConfig = {}
  if (!isRecord(raw)) {
    problems.push('(root): expected a mapping of configuration keys')
  } else {
    const parsed = fileSchema({ env, cwd }).safeParse(raw, { reportInput: true })
    if (parsed.success) file = parsed.data
    else problems.push(...formatIssues(parsed.error.issues))
  }
  const eo = envOverlay(env, problems)
  const fo = flagOverlay(flagsIn, problems)
  crossChecks(raw, eo, fo, problems)
  if (problems.length > 0) throw new ConfigError([...new Set(problems)])

  const defaultTagTtl = fo.tagTtl ?? eo.tagTtl ?? file.tagTtl ?? DEFAULTS.tagTtl
  const overrideUrls = new Map<string, string>()
  for (const u of [...eo.upstreams, ...fo.upstreams]) overrideUrls.set(u.name, u.url) // flags last: they win

  const entries = new Map((file.upstreams ?? []).map((e) => [e.name, e]))
  const names: string[] = file.wellKnownUpstreams === false ? [] : Object.keys(WELL_KNOWN_UPSTREAMS)
  for (const n of [...entries.keys(), ...overrideUrls.keys()]) if (!names.includes(n)) names.push(n)
  const upstreams: UpstreamConfig[] = []
  for (const name of names) {
    const entry = entries.get(name)
    if (entry?.enabled === false && !overrideUrls.has(name)) continue
    upstreams.push(buildUpstream(name, entry, overrideUrls.get(name), defaultTagTtl))
  }

  const dataDir = resolvePath(cwd, fo.dataDir ?? eo.dataDir ?? file.dataDir ?? DEFAULTS.dataDir)
  let maxSize = fo.maxSize ?? eo.maxSize ?? file.cache?.maxSize ?? 'auto'
  if (maxSize === 'auto') {
    const total = filesystemSize(dataDir)
    maxSize = total === undefined ? DEFAULTS.maxSizeCap : autoMaxSize(total)
  }
  const redis = fo.redis ?? eo.redis ?? file.metadata?.redis

  const T = DEFAULTS
  return {
    listen: fo.listen ?? eo.listen ?? file.listen ?? parseListen(T.listen),
    dataDir,
    log: { level: fo.logLevel ?? eo.logLevel ?? file.log?.level ?? T.logLevel },
    defaultUpstream: fo.defaultUpstream ?? eo.defaultUpstream ?? file.defaultUpstream ?? T.defaultUpstream,
    upstreams,
    cache: {
      maxSize,
      pins: [...new Set([...(file.cache?.pins ?? []), ...eo.pins, ...fo.pins])],
      touchInterval: file.cache?.touchInterval ?? T.touchInterval,
    },
    metadata: { ...(redis !== undefined ? { redis } : {}), prefix: file.metadata?.prefix ?? T.metadataPrefix },
    timeouts: { ...T.timeouts, ...stripUndefined(file.timeouts) },
    retries: { ...T.retries, ...stripUndefined(file.retries) },
    offline: { ...T.offline, ...stripUndefined(file.offline) },
    server: { ...T.server, ...stripUndefined(file.server) } as Config['server'],
  }
}

function stripUndefined<T extends object>(o: T | undefined): Partial<T> {
  const out: Partial<T> = {}
  if (!o) return out
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}

/** Parses YAML text; syntax errors become problems `FILE:LINE:COL: message`. */
export function parseYaml(text: string, file: string): unknown {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter })
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0])
        const msg = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
        return pos ? `${file}:${pos.line}:${pos.col}: ${msg}` : `${file}: ${msg}`
      }),
    )
  }
  return doc.toJS({ maxAliasCount: 100 })
}

/**
 * Loads the configuration: the YAML file named by flags.config ?? env.REGMIRROR_CONFIG (none = defaults only),
 * then env (default process.env), then flags. Throws ConfigError listing every problem.
 */
export async function loadConfig(opts: { flags?: CliFlags; env?: Env; cwd?: string } = {}): Promise<Config> {
  const env = opts.env ?? process.env
  const cwd = opts.cwd ?? process.cwd()
  const flags = opts.flags ?? {}
  const file = flags.config ?? nonEmpty(env.REGMIRROR_CONFIG)
  let raw: unknown = {}
  if (file !== undefined) {
    const where = flags.config !== undefined ? '--config' : 'REGMIRROR_CONFIG'
    const full = resolvePath(cwd, file)
    let text: string
    try {
      text = readFileSync(full, 'utf8')
    } catch (e) {
      throw new ConfigError([`${where}: cannot read ${full} (${(e as NodeJS.ErrnoException).code ?? 'error'})`])
    }
    raw = parseYaml(text, full)
  }
  return resolveConfig(raw, { env, flags, cwd })
}

const REDACTED = '[REDACTED]'

/** A deep copy of the config with every credential value (and any password in the Redis URL) replaced by '[REDACTED]'. */
export function redactConfig(c: Config): unknown {
  const copy = structuredClone(c)
  for (const u of copy.upstreams) {
    if (!u.credentials) continue
    for (const k of Object.keys(u.credentials) as (keyof typeof u.credentials)[]) {
      if (u.credentials[k] !== undefined) u.credentials[k] = REDACTED
    }
  }
  if (copy.metadata.redis !== undefined) copy.metadata.redis = redactUrl(copy.metadata.redis)
  return copy
}

function redactUrl(s: string): string {
  try {
    const u = new URL(s)
    if (u.password) u.password = REDACTED
    return u.password ? u.href.replace(encodeURIComponent(REDACTED), REDACTED) : s
  } catch {
    return REDACTED
  }
}

// parseHttpUrl is re-exported for callers validating URLs the same way the config does.
export { parseHttpUrl }
