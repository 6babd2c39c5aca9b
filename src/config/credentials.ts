/**
 * Registry credentials: a user name and a password or a token, each secret given inline, in a file or in a
 * named environment variable. Secrets are read while the file is parsed, so a missing one is a problem
 * like any other; messages name the file or variable, never a value.
 */
import { readFileSync } from 'node:fs'
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { z } from 'zod'
import { REDACTED, type SchemaContext, type ValueType } from './values.js'

export interface Credentials {
  username?: string
  password?: string
  token?: string
}

type Secret = { value?: string; error?: string }

/** Reads a secret from a file (trailing newline removed); returns an error message instead on failure. */
function readSecretFile(sc: SchemaContext, path: string): Secret {
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

function readSecretEnv(sc: SchemaContext, name: string): Secret {
  const v = sc.env[name]
  if (v === undefined || v === '') return { error: `environment variable ${name} is not set` }
  return { value: v }
}

const str = () => z.string().min(1, { error: 'must not be empty' })

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
    .transform((c, ctx): Credentials | undefined => {
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
        const r: Secret =
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
      // An empty mapping configures nothing: the upstream then has no credentials at all.
      return Object.keys(out).length > 0 ? out : undefined
    })
}

/** `config check` prints the secrets' values (redacted), not where they came from: the output is self-contained. */
export const credentials: ValueType<Credentials | undefined> = {
  doc: 'mapping',
  schema: credentialsSchema,
  format: (c) => c,
  redact: (c) => {
    if (c === undefined) return c
    const copy: Credentials = { ...c }
    for (const k of Object.keys(copy) as (keyof Credentials)[]) if (copy[k] !== undefined) copy[k] = REDACTED
    return copy
  },
}
