/**
 * Configuration schema: the resolved `Config` type other modules consume, its defaults, the built-in
 * well-known upstreams, and the zod schema of the YAML file (strict: unknown keys are errors).
 * Every field is described in docs/configuration.md; keep the two in step.
 */
import { readFileSync } from 'node:fs'
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { z } from 'zod'
import { BlockList } from 'node:net'
import { addNetwork } from '../cidr.js'
import { isHostName, parseImageRef } from '../oci/reference.js'
import { parseDuration, parseSize } from './durations.js'

export { ttlFor, repoAllowed, globMatch } from './match.js'
export { ConfigError } from './errors.js'

// ---------------------------------------------------------------------------------------------------------------
// Resolved types

export interface Credentials {
  username?: string
  password?: string
  token?: string
}

/**
 * `pattern` is a glob matched against the tag (`latest`, `v*`, `*-rc*`) or, if it contains ':', against
 * `repo:tag` (`library/nginx:*`); `*` matches any run of characters except '/', `**` matches anything.
 * The literal word `semver` matches version-like tags: 1, 1.2, v1.2.3, 1.2.3-alpine.
 */
export interface TtlRule {
  pattern: string
  ttl: number
}

export interface UpstreamConfig {
  /** e.g. 'docker.io', 'ghcr.io', or any operator-chosen name matching UPSTREAM_NAME_RE */
  name: string
  /** http(s) base URL, no trailing slash */
  url: string
  /** extra Host header names mapped to this upstream (lower-cased, may include :port) */
  hosts: string[]
  /** true for docker.io: one-component names get 'library/' */
  libraryPrefix: boolean
  credentials?: Credentials
  /** ms */
  tagTtl: number
  /** first match wins, else tagTtl */
  tagTtlRules: TtlRule[]
  /** repository glob patterns; empty = all allowed */
  allow: string[]
  /** repository glob patterns; deny wins over allow */
  deny: string[]
  /** extra allowed token realm hosts (besides the upstream's own registrable domain) */
  realms: string[]
  /** CIDR networks redirect targets and token realms may reach although loopback, link-local, private or unique-local */
  allowedNetworks: string[]
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface Config {
  listen: { host: string; port: number }
  /** absolute */
  dataDir: string
  log: { level: LogLevel }
  defaultUpstream: string
  /** enabled upstreams only, well-known defaults merged in */
  upstreams: UpstreamConfig[]
  /** maxSize bytes; pins are image references; touchInterval ms */
  cache: { maxSize: number; pins: string[]; touchInterval: number }
  metadata: { redis?: string; prefix: string }
  /** ms */
  timeouts: { connect: number; headers: number; bodyIdle: number; shutdown: number }
  /** backoff ms */
  retries: { attempts: number; resumeAttempts: number; backoff: number }
  /** coolDown ms */
  offline: { failureThreshold: number; coolDown: number }
  /** ms / bytes */
  server: { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number; idleTimeout: number; maxHeaderSize: number }
}

// ---------------------------------------------------------------------------------------------------------------
// Defaults

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export const UPSTREAM_NAME_RE = /^[a-z0-9][a-z0-9.-]*(:[0-9]+)?$/

const GiB = 1024 ** 3

export const DEFAULTS = {
  listen: '0.0.0.0:5000',
  dataDir: './data',
  logLevel: 'info' as LogLevel,
  defaultUpstream: 'docker.io',
  tagTtl: 5 * 60_000,
  /** cap of the `auto` cache size */
  maxSizeCap: 50 * GiB,
  /** fraction of the filesystem's total size used by `auto` */
  maxSizeFraction: 0.8,
  touchInterval: 60_000,
  metadataPrefix: 'regmirror',
  timeouts: { connect: 10_000, headers: 30_000, bodyIdle: 30_000, shutdown: 30_000 },
  retries: { attempts: 3, resumeAttempts: 5, backoff: 200 },
  offline: { failureThreshold: 5, coolDown: 30_000 },
  server: { headersTimeout: 20_000, requestTimeout: 0, keepAliveTimeout: 65_000, idleTimeout: 300_000, maxHeaderSize: 16_384 },
} as const

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

// ---------------------------------------------------------------------------------------------------------------
// Value parsers shared by the file schema, the environment and the flags. Each throws Error(message).

/** Parses 'HOST:PORT', '[::]:5000', ':5000' (= 0.0.0.0) or a bare port. */
export function parseListen(v: string | number): { host: string; port: number } {
  const bad = (why = 'must be HOST:PORT, [IPv6]:PORT or :PORT'): Error => new Error(`${why}, got ${JSON.stringify(v)}`)
  let host: string
  let portStr: string
  const s = String(v).trim()
  if (/^\d+$/.test(s)) {
    host = '0.0.0.0'
    portStr = s
  } else if (s.startsWith('[')) {
    const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s)
    if (!m) throw bad()
    host = m[1]!
    portStr = m[2]!
  } else {
    const i = s.lastIndexOf(':')
    if (i < 0) throw bad()
    host = s.slice(0, i) || '0.0.0.0'
    portStr = s.slice(i + 1)
    if (host.includes(':') || !/^[A-Za-z0-9.-]+$/.test(host)) throw bad()
  }
  if (!/^\d+$/.test(portStr)) throw bad()
  const port = Number(portStr)
  if (port > 65535) throw bad('port must be 0-65535')
  return { host, port }
}

/**
 * A text about a URL with any `user:password@` replaced, for messages: whatever was typed where a
 * URL belongs is never echoed with its secret, valid URL or not.
 */
export function redactUserinfo(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s"]*@/gi, '$1[REDACTED]@')
}

/** Validates a network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address. */
export function parseNetwork(v: string): string {
  addNetwork(new BlockList(), v)
  return v.trim()
}

/** Validates an http(s) base URL and returns it without trailing slashes. */
export function parseHttpUrl(v: string): string {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new Error('must be an http or https URL')
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('must be an http or https URL')
  if (u.username || u.password) throw new Error('must not contain credentials (use credentials: instead)')
  if (u.search || u.hash) throw new Error('must not have a query or fragment')
  return u.href.replace(/\/+$/, '')
}

/** Validates a redis:// or rediss:// URL (returned unchanged). */
export function parseRedisUrl(v: string): string {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new Error('must be a redis:// or rediss:// URL')
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error('must be a redis:// or rediss:// URL')
  return v
}

export function parseUpstreamName(v: string): string {
  if (!UPSTREAM_NAME_RE.test(v)) {
    throw new Error(`not a valid upstream name: ${JSON.stringify(v)} (lower-case letters, digits, '.', '-', optional :port)`)
  }
  return v
}

export function parseLogLevel(v: string): LogLevel {
  const l = v.trim().toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(l)) {
    throw new Error(`must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(v)}`)
  }
  return l as LogLevel
}

/** `NAME=URL` as used by --upstream and REGMIRROR_UPSTREAMS. */
export function parseUpstreamAssignment(v: string): { name: string; url: string } {
  const i = v.indexOf('=')
  if (i <= 0 || v.slice(0, i).includes('//')) throw new Error(`must be NAME=URL, got ${JSON.stringify(redactUserinfo(v))}`)
  const name = parseUpstreamName(v.slice(0, i).trim())
  let url: string
  try {
    url = parseHttpUrl(v.slice(i + 1).trim())
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`)
  }
  return { name, url }
}

/** A fully qualified image reference `UPSTREAM/REPO:TAG`, `UPSTREAM/REPO@sha256:…` or both. Returns the upstream name. */
export function parsePinRef(v: string): { upstream: string; ref: string } {
  const r = parseImageRef(v)
  if (!r) throw new Error(`not an image reference UPSTREAM/REPO:TAG or UPSTREAM/REPO@sha256:DIGEST: ${JSON.stringify(v)}`)
  return { upstream: r.registry, ref: v }
}

// ---------------------------------------------------------------------------------------------------------------
// The file schema

/** Context for resolving secrets while parsing. */
export interface SchemaContext {
  env: Record<string, string | undefined>
  cwd: string
}

type Ctx = z.core.$RefinementCtx<unknown>

function fail(ctx: Ctx, message: string): typeof z.NEVER {
  ctx.addIssue({ code: 'custom', message })
  return z.NEVER
}

function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return typeof v
}

/** A field holding a string (or number) validated by `fn`, with `fn`'s error message as the problem. */
function parsed<T>(fn: (v: string) => T, opts: { numbers?: boolean; what: string }) {
  return z.unknown().transform((v, ctx): T => {
    if (typeof v === 'number' && opts.numbers) v = String(v)
    if (typeof v !== 'string') return fail(ctx, `expected ${opts.what}, got ${typeName(v)}`)
    try {
      return fn(v)
    } catch (e) {
      return fail(ctx, (e as Error).message)
    }
  })
}

const durationField = () =>
  z.unknown().transform((v, ctx): number => {
    if (typeof v !== 'string' && typeof v !== 'number') return fail(ctx, `expected a duration like 30s, got ${typeName(v)}`)
    try {
      return parseDuration(v)
    } catch (e) {
      return fail(ctx, (e as Error).message)
    }
  })

const sizeField = (allowAuto: boolean) =>
  z.unknown().transform((v, ctx): number | 'auto' => {
    if (allowAuto && v === 'auto') return 'auto'
    if (typeof v !== 'string' && typeof v !== 'number') return fail(ctx, `expected a size like 500MiB, got ${typeName(v)}`)
    try {
      return parseSize(v)
    } catch (e) {
      return fail(ctx, (e as Error).message)
    }
  })

const str = () => z.string().min(1, { error: 'must not be empty' })
const int = (min: number) =>
  z
    .number()
    .int({ error: 'must be an integer' })
    .min(min, { error: `must be >= ${min}` })
const hostField = () =>
  parsed(
    (v) => {
      const h = v.trim().toLowerCase()
      if (!isHostName(h)) throw new Error(`not a host name: ${JSON.stringify(v)}`)
      return h
    },
    { what: 'a host name' },
  )
const globList = () => z.array(str())

/** Reads a secret from a file (trailing newline removed); returns an error message instead on failure. */
function readSecretFile(sc: SchemaContext, path: string): { value?: string; error?: string } {
  const full = isAbsolute(path) ? path : resolvePath(sc.cwd, path)
  let text: string
  try {
    text = readFileSync(full, 'utf8')
  } catch (e) {
    return { error: `cannot read secret file ${full} (${(e as NodeJS.ErrnoException).code ?? 'error'})` }
  }
  text = text.replace(/\r?\n$/, '')
  if (text === '') return { error: `secret file ${full} is empty` }
  return { value: text }
}

function readSecretEnv(sc: SchemaContext, name: string): { value?: string; error?: string } {
  const v = sc.env[name]
  if (v === undefined || v === '') return { error: `environment variable ${name} is not set` }
  return { value: v }
}

function credentialsSchema(sc: SchemaContext) {
  return z
    .strictObject({
      username: str().optional(),
      password: str().optional(),
      passwordFile: str().optional(),
      passwordEnv: str().optional(),
      token: str().optional(),
      tokenFile: str().optional(),
      tokenEnv: str().optional(),
    })
    .transform((c, ctx): Credentials => {
      const out: Credentials = {}
      if (c.username !== undefined) out.username = c.username
      for (const kind of ['password', 'token'] as const) {
        const sources = ([kind, `${kind}File`, `${kind}Env`] as const).filter((k) => c[k] !== undefined)
        if (sources.length > 1) {
          ctx.addIssue({ code: 'custom', message: `use only one of ${sources.join(', ')}`, path: [sources[1]!] })
          continue
        }
        const src = sources[0]
        if (src === undefined) continue
        const r: { value?: string; error?: string } =
          src === kind ? { value: c[kind] } : src.endsWith('File') ? readSecretFile(sc, c[src]!) : readSecretEnv(sc, c[src]!)
        if (r.error !== undefined) ctx.addIssue({ code: 'custom', message: r.error, path: [src] })
        else if (r.value !== undefined) out[kind] = r.value
      }
      const hasPassword = c.password !== undefined || c.passwordFile !== undefined || c.passwordEnv !== undefined
      const hasToken = c.token !== undefined || c.tokenFile !== undefined || c.tokenEnv !== undefined
      if (hasPassword && hasToken) ctx.addIssue({ code: 'custom', message: 'use either a password or a token, not both' })
      if (hasPassword && c.username === undefined) {
        ctx.addIssue({ code: 'custom', message: 'a password needs a username', path: ['username'] })
      }
      return out
    })
}

export function upstreamEntrySchema(sc: SchemaContext) {
  return z.strictObject({
    name: parsed(parseUpstreamName, { what: 'an upstream name' }),
    enabled: z.boolean().optional(),
    url: parsed(parseHttpUrl, { what: 'an http or https URL' }).optional(),
    hosts: z.array(hostField()).optional(),
    libraryPrefix: z.boolean().optional(),
    credentials: credentialsSchema(sc).optional(),
    tagTtl: durationField().optional(),
    tagTtlRules: z.array(z.strictObject({ pattern: str(), ttl: durationField() })).optional(),
    allow: globList().optional(),
    deny: globList().optional(),
    realms: z.array(hostField()).optional(),
    allowedNetworks: z.array(parsed(parseNetwork, { what: 'a network like 10.0.0.0/8' })).optional(),
  })
}

/** The zod schema of the YAML configuration file. Secrets named by *File / *Env are read while parsing. */
export function fileSchema(sc: SchemaContext) {
  return z.strictObject({
    listen: parsed(parseListen, { numbers: true, what: 'HOST:PORT' }).optional(),
    dataDir: str().optional(),
    defaultUpstream: parsed(parseUpstreamName, { what: 'an upstream name' }).optional(),
    wellKnownUpstreams: z.boolean().optional(),
    tagTtl: durationField().optional(),
    log: z.strictObject({ level: parsed(parseLogLevel, { what: 'a log level' }).optional() }).optional(),
    upstreams: z.array(upstreamEntrySchema(sc)).nullable().optional(),
    cache: z
      .strictObject({
        maxSize: sizeField(true).optional(),
        pins: z.array(parsed((v) => parsePinRef(v).ref, { what: 'an image reference' })).optional(),
        touchInterval: durationField().optional(),
      })
      .optional(),
    metadata: z
      .strictObject({
        redis: parsed(parseRedisUrl, { what: 'a redis:// URL' }).optional(),
        prefix: str().optional(),
      })
      .optional(),
    timeouts: z
      .strictObject({
        connect: durationField().optional(),
        headers: durationField().optional(),
        bodyIdle: durationField().optional(),
        shutdown: durationField().optional(),
      })
      .optional(),
    retries: z
      .strictObject({
        attempts: int(0).optional(),
        resumeAttempts: int(0).optional(),
        backoff: durationField().optional(),
      })
      .optional(),
    offline: z
      .strictObject({
        failureThreshold: int(1).optional(),
        coolDown: durationField().optional(),
      })
      .optional(),
    server: z
      .strictObject({
        headersTimeout: durationField().optional(),
        requestTimeout: durationField().optional(),
        keepAliveTimeout: durationField().optional(),
        idleTimeout: durationField().optional(),
        maxHeaderSize: sizeField(false).optional(),
      })
      .optional(),
  })
}

export type FileConfig = z.output<ReturnType<typeof fileSchema>>
export type UpstreamEntry = z.output<ReturnType<typeof upstreamEntrySchema>>

/** Formats a zod issue path as `upstreams[2].url`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else out += out === '' ? String(p) : `.${String(p)}`
  }
  return out
}

/** One problem line per zod issue (unknown keys: one line per key). Never includes input values of type errors. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const out: string[] = []
  for (const iss of issues) {
    const at = (extra: PropertyKey[] = []): string => formatPath([...iss.path, ...extra]) || '(root)'
    switch (iss.code) {
      case 'unrecognized_keys':
        for (const k of iss.keys) out.push(`${at([k])}: unknown key`)
        break
      case 'invalid_type': {
        const input = (iss as { input?: unknown }).input
        if (iss.expected === 'int' && typeof input === 'number') {
          out.push(`${at()}: must be an integer`)
          break
        }
        const expected = iss.expected === 'object' ? 'a mapping' : iss.expected === 'array' ? 'a list' : iss.expected
        out.push(input === undefined ? `${at()}: required` : `${at()}: expected ${expected}, got ${typeName(input)}`)
        break
      }
      case 'invalid_value':
        out.push(`${at()}: must be one of ${iss.values.map((v) => String(v)).join(', ')}`)
        break
      default:
        out.push(`${at()}: ${iss.message}`)
    }
  }
  return out
}
