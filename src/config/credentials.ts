/**
 * Registry credentials: a user name and a password or a token, each secret given inline, in a file or in a
 * named environment variable; one such mapping, or a list of them (several accounts of one registry, used in
 * turn by remaining pull quota: upstream/quota.ts). Secrets are read while the file is parsed, so a missing one
 * is a problem like any other; messages name the file or variable, never a value.
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

export type Secret = { value?: string; error?: string }

/** Reads a secret from a file (trailing newline removed); returns an error message instead on failure. */
export function readSecretFile(sc: SchemaContext, path: string): Secret {
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

export function readSecretEnv(sc: SchemaContext, name: string): Secret {
  const v = sc.env[name]
  if (v === undefined || v === '') return { error: `environment variable ${name} is not set` }
  return { value: v }
}

const str = () => z.string().min(1, { error: 'must not be empty' })

function oneCredentialSchema(sc: SchemaContext) {
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

/** Resolved: the list (one mapping is a list of one), undefined when nothing is configured. */
function credentialsSchema(sc: SchemaContext) {
  const one = oneCredentialSchema(sc)
  const many = z.array(one)
  // Not a z.union: its failure would be one "invalid input" instead of the mapping's own problems.
  return z.unknown().transform((v, ctx): Credentials[] | undefined => {
    const r = Array.isArray(v) ? many.safeParse(v, { reportInput: true }) : one.transform((c) => [c]).safeParse(v, { reportInput: true })
    if (!r.success) {
      for (const issue of r.error.issues) ctx.addIssue({ ...issue } as Parameters<typeof ctx.addIssue>[0])
      return z.NEVER
    }
    const given = r.data.filter((c): c is Credentials => c !== undefined)
    return given.length > 0 ? given : undefined
  })
}

function redactOne(c: Credentials): Credentials {
  const copy: Credentials = { ...c }
  for (const k of Object.keys(copy) as (keyof Credentials)[]) if (copy[k] !== undefined) copy[k] = REDACTED
  return copy
}

/**
 * `config check` prints the secrets' values (redacted), not where they came from: the output is self-contained.
 * One credential prints as the mapping it most likely was written as.
 */
export const credentials: ValueType<Credentials[] | undefined> = {
  doc: 'mapping or list',
  schema: credentialsSchema,
  format: (c) => (c?.length === 1 ? c[0] : c),
  redact: (c) => c?.map(redactOne),
}
