/**
 * The configuration's types and the zod schema of the YAML file (strict: unknown keys are errors), both
 * derived from the declarations in settings.ts and upstreams.ts; and how zod's issues become problems.
 */
import type { z } from 'zod'
import { objectSchema } from './declare.js'
import { SETTINGS } from './settings.js'
import { typeName, type SchemaContext } from './values.js'

export { ttlFor, repoAllowed, globMatch } from './match.js'
export { ConfigError } from './errors.js'
export type { Config } from './settings.js'
export type { Credentials } from './credentials.js'
export { WELL_KNOWN_UPSTREAMS, type TtlRule, type UpstreamConfig, type WellKnownUpstream } from './upstreams.js'
export { LOG_LEVELS, UPSTREAM_NAME_RE, type LogLevel } from './parse.js'
export type { SchemaContext } from './values.js'

/** The zod schema of the YAML configuration file. Secrets named by *File / *Env are read while parsing. */
export function fileSchema(sc: SchemaContext): z.ZodType<Record<string, unknown>> {
  return objectSchema(SETTINGS, sc)
}

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
