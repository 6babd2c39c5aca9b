/**
 * The kinds of value a setting can hold. A value type knows how to read its value from the file (a zod
 * schema whose issues are the problems), from an environment variable or a flag (a string), how to write
 * it back in the file's form for `config check`, how the docs name it, and what of it is secret.
 * Settings (settings.ts, upstreams.ts) pick one of these; a new kind of value is added here once.
 */
import { z } from 'zod'
import { formatDuration, formatSize, parseDuration, parseSize } from './durations.js'
import {
  LOG_LEVELS,
  parseBoolean,
  parseHostName,
  parseHttpUrl,
  parseListen,
  parseLogLevel,
  parseNetwork,
  parsePinRef,
  parseProxy,
  parseRedisUrl,
  parseUpstreamName,
} from './parse.js'

/** Context for resolving secrets while parsing the file. */
export interface SchemaContext {
  env: Record<string, string | undefined>
  cwd: string
}

export interface ValueType<T> {
  /** Its name in the docs' Type column (markdown). */
  readonly doc: string
  /** The docs' name of several, for `list of …`; default `doc` + 's'. */
  readonly plural?: string
  /** The file's value (whatever YAML gave) to T; each zod issue is one problem. */
  readonly schema: (sc: SchemaContext) => z.ZodType<T>
  /** A string from the environment or a flag to T; throws Error(problem). Absent: only the file can give it. */
  readonly parse?: (s: string) => T
  /** For lists: the type of one element (the environment gives them comma-separated, a flag repeated). */
  readonly element?: ValueType<unknown>
  /** T back in the file's form, for `config check`. Method syntax: a table holds types of many T. */
  format(v: T): unknown
  /** A copy with every secret replaced by `[REDACTED]`; absent when the value holds none. */
  redact?(v: T): T
}

export const REDACTED = '[REDACTED]'

type Ctx = z.core.$RefinementCtx<unknown>

function fail(ctx: Ctx, message: string): typeof z.NEVER {
  ctx.addIssue({ code: 'custom', message })
  return z.NEVER
}

export function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return typeof v
}

const identity = <T>(v: T): T => v

/** A field holding a string (or number) validated by `fn`, with `fn`'s error message as the problem. */
function parsed<T>(fn: (v: string) => T, opts: { numbers?: boolean; what: string }): z.ZodType<T> {
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

/** A value written as text, read the same way from the file, the environment and flags. */
export function textual<T>(o: {
  doc: string
  plural?: string
  what: string
  numbers?: boolean
  parse: (s: string) => T
  format?: (v: T) => unknown
}) {
  const t: ValueType<T> = {
    doc: o.doc,
    plural: o.plural,
    schema: () => parsed(o.parse, { numbers: o.numbers, what: o.what }),
    parse: o.parse,
    format: o.format ?? identity,
  }
  return t
}

/** Durations and sizes: a number or a string, with their own wording for any other type. */
function measure<T>(o: { doc: string; what: string; parse: (s: string | number) => T; format: (v: T) => unknown }) {
  const t: ValueType<T> = {
    doc: o.doc,
    schema: () =>
      z.unknown().transform((v, ctx): T => {
        if (typeof v !== 'string' && typeof v !== 'number') return fail(ctx, `expected ${o.what}, got ${typeName(v)}`)
        try {
          return o.parse(v)
        } catch (e) {
          return fail(ctx, (e as Error).message)
        }
      }),
    parse: o.parse,
    format: o.format,
  }
  return t
}

const nonEmptyString = () => z.string().min(1, { error: 'must not be empty' })

/** The URL with its password replaced; a URL that does not parse is replaced whole, as it may be all secret. */
function redactUrl(s: string): string {
  try {
    const u = new URL(s)
    if (u.password) u.password = REDACTED
    return u.password ? u.href.replace(encodeURIComponent(REDACTED), REDACTED) : s
  } catch {
    return REDACTED
  }
}

/** The URL with its user name and password (both are credentials of a proxy) replaced. */
function redactUserinfoOfUrl(s: string): string {
  try {
    const u = new URL(s)
    if (!u.username && !u.password) return s
    return `${u.protocol}//${REDACTED}${u.password ? `:${REDACTED}` : ''}@${u.host}`
  } catch {
    return s === 'none' ? s : REDACTED
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The value types

export const duration = measure({ doc: 'duration', what: 'a duration like 30s', parse: parseDuration, format: formatDuration })

export const size = measure({ doc: 'size', what: 'a size like 500MiB', parse: parseSize, format: formatSize })

export const sizeOrAuto = measure<number | 'auto'>({
  doc: 'size or `auto`',
  what: 'a size like 500MiB',
  parse: (v) => (v === 'auto' ? 'auto' : parseSize(v)),
  format: (v) => (v === 'auto' ? v : formatSize(v)),
})

export const listenAddress = textual({
  doc: 'listen address',
  what: 'HOST:PORT',
  numbers: true,
  parse: parseListen,
  format: (l) => `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`,
})

export const httpUrl = textual({ doc: 'URL', what: 'an http or https URL', parse: parseHttpUrl })

export const redisUrl: ValueType<string> = {
  ...textual({ doc: '`redis://` or `rediss://` URL', what: 'a redis:// URL', parse: parseRedisUrl }),
  redact: redactUrl,
}

/** `none` or a proxy URL; `config check` shows its user name and password as [REDACTED]. */
export const proxy: ValueType<string> = {
  ...textual({ doc: 'proxy URL or `none`', what: 'a proxy URL or none', parse: parseProxy }),
  redact: redactUserinfoOfUrl,
}

export const upstreamName = textual({ doc: 'upstream name', what: 'an upstream name', parse: parseUpstreamName })

export const logLevel = textual({ doc: LOG_LEVELS.map((l) => `\`${l}\``).join(', '), what: 'a log level', parse: parseLogLevel })

/** Lower-cased; may include `:port`. */
export const hostName = textual({ doc: '`host[:port]`', plural: '`host[:port]`', what: 'a host name', parse: parseHostName })

export const network = textual({ doc: 'CIDR network', what: 'a network like 10.0.0.0/8', parse: parseNetwork })

export const imageRef = textual({ doc: 'image reference', what: 'an image reference', parse: (v) => parsePinRef(v).ref })

export const boolean: ValueType<boolean> = { doc: 'boolean', schema: () => z.boolean(), parse: parseBoolean, format: identity }

export const string: ValueType<string> = { doc: 'string', schema: nonEmptyString, parse: identity, format: identity }

/** A file or directory; relative paths are resolved where the setting is used. Not trimmed: a path may end in a space. */
export const path: ValueType<string> = { ...string, doc: 'path' }

/** A string that must not be shown: `config check` prints it as [REDACTED]. */
export const secret: ValueType<string> = { ...string, doc: 'secret', redact: () => REDACTED }

/** An absolute URI path ending in `/`, of unreserved characters only (it goes into a response header). */
export const uriPrefix = textual({
  doc: 'URI prefix',
  what: 'a URI path like /_regmirror_blobs/',
  parse: (v) => {
    if (!/^\/([A-Za-z0-9._~-]+\/)*$/.test(v))
      throw new Error(`must be a path of letters, digits and ._~- that starts and ends with /, got ${JSON.stringify(v)}`)
    return v
  },
})

/** An HTTP header name (RFC 9110 token), lower-cased as Node presents request headers. */
export const headerName = textual({
  doc: 'header name',
  what: 'an HTTP header name',
  parse: (v) => {
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(v)) throw new Error(`not an HTTP header name: ${JSON.stringify(v)}`)
    return v.toLowerCase()
  },
})

/** See match.ts for the syntax. */
export const glob: ValueType<string> = { ...string, doc: 'glob' }

export function integer(min: number): ValueType<number> {
  return {
    doc: `integer ≥ ${min}`,
    schema: () =>
      z
        .number()
        .int({ error: 'must be an integer' })
        .min(min, { error: `must be >= ${min}` }),
    parse: (s) => {
      if (!/^-?\d+$/.test(s.trim())) throw new Error(`must be an integer, got ${JSON.stringify(s)}`)
      const n = Number(s)
      if (n < min) throw new Error(`must be >= ${min}`)
      return n
    },
    format: identity,
  }
}

/** A number that may have a fraction (a rate, a bandwidth), at least `min`. */
export function number(min: number): ValueType<number> {
  return {
    doc: `number ≥ ${min}`,
    schema: () =>
      z
        .number()
        .finite({ error: 'must be a finite number' })
        .min(min, { error: `must be >= ${min}` }),
    parse: (s) => {
      if (!/^\d+(\.\d+)?$/.test(s.trim())) throw new Error(`must be a number, got ${JSON.stringify(s)}`)
      const n = Number(s)
      if (n < min) throw new Error(`must be >= ${min}`)
      return n
    },
    format: identity,
  }
}

/** A list; `unique` drops repeated elements (the first stays). */
export function listOf<T>(t: ValueType<T>, opts: { unique?: boolean } = {}): ValueType<T[]> {
  const list: ValueType<T[]> = {
    doc: `list of ${t.plural ?? `${t.doc}s`}`,
    element: t as ValueType<unknown>,
    schema: (sc) => (opts.unique ? z.array(t.schema(sc)).transform((a) => [...new Set(a)]) : z.array(t.schema(sc))),
    format: (a) => a.map((v) => t.format(v)),
  }
  const redact = t.redact?.bind(t)
  return redact ? { ...list, redact: (a) => a.map(redact) } : list
}

/** One of a few words, e.g. `filesystem` or `s3`. */
export function oneOf<const W extends string>(words: readonly W[]): ValueType<W> {
  return textual({
    doc: words.map((w) => `\`${w}\``).join(' or '),
    what: `one of ${words.join(', ')}`,
    parse: (s): W => {
      const w = s.trim()
      if (!(words as readonly string[]).includes(w)) throw new Error(`must be one of ${words.join(', ')}, got ${JSON.stringify(s)}`)
      return w as W
    },
  })
}
