/**
 * Loading the configuration: YAML file, then environment variables, then command-line flags (each layer
 * overrides the one before), validated all at once. Every problem found is reported in one ConfigError.
 */
import { readFileSync } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { LineCounter, parseDocument } from 'yaml'
import type { CliFlags } from './args.js'
import { defaultOf, entries, getPath, isRecord, setPath } from './declare.js'
import { ConfigError } from './errors.js'
import { envLayer, flagLayer, nonEmpty, resolveLayers, type Env, type Layer } from './layers.js'
import { fileSchema, formatIssues } from './schema.js'
import { CONFIG_FILE, DEFAULT_CONFIG_FILE, SETTINGS, type Config } from './settings.js'
import { storageProblems } from './storage-settings.js'
import { checkUpstreamEntries } from './upstreams.js'
import { parseHttpUrl, parsePinRef } from './parse.js'

export { ConfigError } from './errors.js'
export { parseDuration, parseSize } from './durations.js'
export { autoMaxSize, filesystemSize } from './auto-size.js'
export type { Config, Credentials, TtlRule, UpstreamConfig } from './schema.js'

/**
 * Cross-field checks done on the raw input (so they run even when other fields are invalid):
 * duplicate upstream names, custom upstreams without url, defaultUpstream, pins naming unknown upstreams.
 */
function crossChecks(raw: unknown, env: Layer, flags: Layer, problems: string[]): void {
  const r = isRecord(raw) ? raw : {}
  const named = [...((env.get('upstreams') as { name: string }[]) ?? []), ...((flags.get('upstreams') as { name: string }[]) ?? [])]
  const enabled = checkUpstreamEntries(r, new Set(named.map((a) => a.name)), problems)

  const du = SETTINGS.defaultUpstream
  const [where, name] = flags.has('defaultUpstream')
    ? [`--${du.flag}`, flags.get('defaultUpstream')]
    : env.has('defaultUpstream')
      ? [du.env, env.get('defaultUpstream')]
      : ['defaultUpstream', r.defaultUpstream ?? defaultOf(du)]
  if (typeof name === 'string' && !enabled.has(name)) {
    problems.push(`${where}: upstream "${name}" is not configured or is disabled (enabled: ${[...enabled].join(', ') || 'none'})`)
  }

  const checkPin = (at: string, p: unknown): void => {
    if (typeof p !== 'string') return
    let up: string
    try {
      up = parsePinRef(p).upstream
    } catch {
      return // reported elsewhere
    }
    if (!enabled.has(up)) problems.push(`${at}: upstream "${up}" of ${p} is not configured or is disabled`)
  }
  const pins = SETTINGS['cache.pins'] as { env?: string; flag?: string }
  const inFile = getPath(r, 'cache.pins')
  if (Array.isArray(inFile)) inFile.forEach((p, i) => checkPin(`cache.pins[${i}]`, p))
  if (pins.env !== undefined) for (const p of (env.get('cache.pins') as unknown[]) ?? []) checkPin(pins.env, p)
  if (pins.flag !== undefined) for (const p of (flags.get('cache.pins') as unknown[]) ?? []) checkPin(`--${pins.flag}`, p)
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
  const env = opts.env ?? {}
  const cwd = opts.cwd ?? process.cwd()
  const problems: string[] = []
  if (raw === null || raw === undefined) raw = {}

  let file: Record<string, unknown> = {}
  if (!isRecord(raw)) {
    problems.push('(root): expected a mapping of configuration keys')
  } else {
    const parsed = fileSchema({ env, cwd }).safeParse(raw, { reportInput: true })
    if (parsed.success) file = parsed.data
    else problems.push(...formatIssues(parsed.error.issues))
  }
  const el = envLayer(env, problems)
  const fl = flagLayer(opts.flags ?? {}, problems)
  crossChecks(raw, el, fl, problems)
  if (problems.length > 0) throw new ConfigError([...new Set(problems)])
  const config = resolveLayers(file, el, fl, cwd)
  const tls = config.server.tls
  // One without the other, from whichever layer: the listener could not start.
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new ConfigError([
      tls.cert === undefined ? 'server.tls.cert: required with server.tls.key' : 'server.tls.key: required with server.tls.cert',
    ])
  }
  const cluster = config.cluster
  if (cluster.peers.length > 0) {
    const missing = [
      ...(cluster.self === undefined ? ["cluster.self: required with cluster.peers (this replica's own base URL)"] : []),
      ...(cluster.secret === undefined || cluster.secret.length < 16
        ? ['cluster.secret: required with cluster.peers, at least 16 characters (REGMIRROR_CLUSTER_SECRET)']
        : []),
    ]
    if (missing.length > 0) throw new ConfigError(missing)
  }
  const storage = storageProblems(raw, config.storage)
  if (storage.length > 0) throw new ConfigError(storage)
  return config
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
 * The parsed YAML file at `full`; `where` names the layer that named it. `ifPresent`: a file that does not exist
 * is no file (undefined) rather than a problem; one that exists but cannot be read still is.
 */
function readConfigFile(full: string, where: string, ifPresent: boolean): unknown {
  let text: string
  try {
    text = readFileSync(full, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (ifPresent && code === 'ENOENT') return undefined
    throw new ConfigError([`${where}: cannot read ${full} (${code ?? 'error'})`])
  }
  return parseYaml(text, full)
}

/**
 * Loads the configuration: the YAML file named by flags.config ?? env.REGMIRROR_CONFIG, else the one named by
 * env.REGMIRROR_DEFAULT_CONFIG if it exists (none = defaults only), then env (default process.env), then flags.
 * Throws ConfigError listing every problem.
 */
export async function loadConfig(opts: { flags?: CliFlags; env?: Env; cwd?: string } = {}): Promise<Config> {
  const env = opts.env ?? process.env
  const cwd = opts.cwd ?? process.cwd()
  const flags = opts.flags ?? {}
  const named = flags.config ?? nonEmpty(env[CONFIG_FILE.env])
  const fallback = nonEmpty(env[DEFAULT_CONFIG_FILE.env])
  let raw: unknown = {}
  if (named !== undefined) {
    raw = readConfigFile(resolvePath(cwd, named), flags.config !== undefined ? `--${CONFIG_FILE.flag}` : CONFIG_FILE.env, false)
  } else if (fallback !== undefined) {
    raw = readConfigFile(resolvePath(cwd, fallback), DEFAULT_CONFIG_FILE.env, true) ?? {}
  }
  return resolveConfig(raw, { env, flags, cwd })
}

/** A deep copy of the config with every secret (credentials, a password in the Redis URL) replaced by '[REDACTED]'. */
export function redactConfig(c: Config): unknown {
  const copy = structuredClone(c) as Record<string, unknown>
  for (const [path, d] of entries(SETTINGS)) {
    const v = getPath(copy, path)
    if (d.type.redact && v !== undefined) setPath(copy, path, d.type.redact(v))
  }
  return copy
}

// parseHttpUrl is re-exported for callers validating URLs the same way the config does.
export { parseHttpUrl }
