/**
 * The settings of object storage (storage/): declared here to keep settings.ts readable, spread into SETTINGS
 * at their place in its order, and otherwise like every other setting there. Each S3 secret may be given
 * inline (or by its environment variable), in a file (`…File`) or in a named environment variable (`…Env`),
 * as registry credentials are (credentials.ts); the `…File` and `…Env` forms are read while the file is
 * parsed and resolved into the plain setting, which `config check` prints redacted.
 */
import { resolve as resolvePath } from 'node:path'
import { z } from 'zod'
import { readSecretFile, readSecretEnv, type Secret } from './credentials.js'
import { setting, type ResolveContext } from './declare.js'
import type { Config } from './settings.js'
import * as v from './values.js'

const S3 = 'storage.s3'

/** A value type whose file value names where a secret is (a file path, a variable name); it resolves to the secret. */
function secretFrom(doc: string, read: (sc: v.SchemaContext, where: string) => Secret): v.ValueType<string> {
  return {
    doc,
    schema: (sc) =>
      z.unknown().transform((where, ctx): string => {
        if (typeof where !== 'string' || where === '') {
          ctx.addIssue({ code: 'custom', message: `expected ${doc}, got ${v.typeName(where)}` })
          return z.NEVER
        }
        const r = read(sc, where)
        if (r.value === undefined) {
          ctx.addIssue({ code: 'custom', message: r.error ?? 'secret is empty' })
          return z.NEVER
        }
        return r.value
      }),
    format: () => v.REDACTED,
    redact: () => v.REDACTED,
  }
}

const secretFile = secretFrom('path of a secret file', readSecretFile)
const secretEnv = secretFrom('environment variable name', readSecretEnv)

/** Where the `…File` and `…Env` forms of a secret go: the plain setting takes the first given, inline first. */
function pickSecret(at: string) {
  return (inline: string | undefined, ctx: ResolveContext): string | undefined =>
    inline ?? (ctx.get(`${at}File`) as string | undefined) ?? (ctx.get(`${at}Env`) as string | undefined)
}

function fileForm(at: string, what: string) {
  return setting(secretFile, {
    optional: true,
    resolvedInto: at,
    docDefault: 'none',
    doc: `file holding ${what} (a trailing newline is dropped)`,
  })
}

function envForm(at: string, what: string) {
  return setting(secretEnv, {
    optional: true,
    resolvedInto: at,
    docDefault: 'none',
    doc: `name of an environment variable holding ${what}`,
  })
}

const inlineDoc = (key: string, what: string): string =>
  `${what}; give one of \`${key}\`, \`${key}File\`, \`${key}Env\` (or none of either key: the AWS SDK's default credential chain). ` +
  'Never logged; redacted by `config check`'

export const STORAGE_SETTINGS = {
  'storage.backend': setting(v.oneOf(['filesystem', 's3'] as const), {
    default: 'filesystem',
    env: 'REGMIRROR_STORAGE_BACKEND',
    doc:
      '`filesystem`: blobs live in `dataDir` only. `s3`: an S3-compatible bucket (`storage.s3`) is the shared, large tier and the ' +
      'disk (`cache.maxSize`) its hot tier; see [Object storage](#object-storage)',
  }),
  'storage.s3.endpoint': setting(v.httpUrl, {
    optional: true,
    docDefault: "none (AWS's endpoint of `region`)",
    env: 'REGMIRROR_S3_ENDPOINT',
    doc: 'base URL of the S3 service (Ceph RGW, MinIO, OSS, COS…), e.g. `https://s3.example.net`',
  }),
  'storage.s3.region': setting(v.string, { default: 'us-east-1', env: 'REGMIRROR_S3_REGION', doc: 'region the requests are signed for' }),
  'storage.s3.bucket': setting(v.string, {
    optional: true,
    docDefault: 'required with `s3`',
    env: 'REGMIRROR_S3_BUCKET',
    doc: 'bucket; created at start-up if it does not exist',
  }),
  'storage.s3.prefix': setting(v.string, {
    default: 'regmirror',
    doc: 'key prefix of everything regmirror stores in the bucket (`<prefix>/blobs/sha256/<hex>`), without leading or trailing `/`',
  }),
  'storage.s3.pathStyle': setting(v.boolean, {
    default: false,
    doc: 'path-style addressing (`endpoint/bucket/key`), as most self-hosted servers need; `false`: virtual-hosted style',
  }),
  'storage.s3.accessKeyIdFile': fileForm('storage.s3.accessKeyId', 'the access key id'),
  'storage.s3.accessKeyIdEnv': envForm('storage.s3.accessKeyId', 'the access key id'),
  'storage.s3.accessKeyId': setting(v.secret, {
    optional: true,
    docDefault: 'none',
    env: 'REGMIRROR_S3_ACCESS_KEY_ID',
    doc: inlineDoc('accessKeyId', 'access key id'),
    resolve: pickSecret('storage.s3.accessKeyId'),
  }),
  'storage.s3.secretAccessKeyFile': fileForm('storage.s3.secretAccessKey', 'the secret access key'),
  'storage.s3.secretAccessKeyEnv': envForm('storage.s3.secretAccessKey', 'the secret access key'),
  'storage.s3.secretAccessKey': setting(v.secret, {
    optional: true,
    docDefault: 'none',
    env: 'REGMIRROR_S3_SECRET_ACCESS_KEY',
    doc: inlineDoc('secretAccessKey', 'secret access key'),
    resolve: pickSecret('storage.s3.secretAccessKey'),
  }),
  'storage.s3.redirect': setting(v.boolean, {
    default: false,
    doc:
      'a blob GET that the hot tier misses and the bucket holds is answered `307` to a presigned URL of the object, so the bytes ' +
      'do not pass through regmirror; clients must reach the storage endpoint',
  }),
  'storage.s3.redirectExpiry': setting(v.duration, { default: '5m', doc: 'lifetime of a presigned redirect URL (at most 7 days)' }),
  'storage.s3.maxSize': setting(v.size, {
    optional: true,
    docDefault: 'none (unbounded)',
    doc: 'bound of the bucket tier: the least recently used blobs (across replicas) are deleted above it',
  }),
  'storage.s3.evictInterval': setting(v.duration, {
    default: '1m',
    doc:
      'how often one replica (the one that takes a lock in Redis) lists the bucket and deletes the least recently used objects ' +
      'above `storage.s3.maxSize`; see [Replicas on one bucket](#replicas-on-one-bucket)',
  }),
  'storage.s3.caFile': setting(v.path, {
    optional: true,
    docDefault: 'system CAs',
    doc: 'PEM file of the CA certificates the storage endpoint is verified against (a private CA)',
    resolve: (p: string | undefined, ctx): string | undefined => (p === undefined ? undefined : resolvePath(ctx.cwd, p)),
  }),
  'storage.s3.insecureSkipVerify': setting(v.boolean, {
    default: false,
    doc: "do not verify the storage endpoint's TLS certificate (tests only: anyone between can read and change blobs)",
  }),
} as const

/** Cross-field problems of the resolved storage settings. */
export function storageProblems(raw: unknown, storage: Config['storage']): string[] {
  const problems: string[] = []
  const s3 = (raw as { storage?: { s3?: Record<string, unknown> } } | undefined)?.storage?.s3 ?? {}
  for (const key of ['accessKeyId', 'secretAccessKey']) {
    const given = [key, `${key}File`, `${key}Env`].filter((k) => s3[k] !== undefined)
    if (given.length > 1) problems.push(`${S3}.${given[1]}: use only one of ${given.map((g) => `${S3}.${g}`).join(', ')}`)
  }
  if (storage.backend !== 's3') return problems
  if (storage.s3.bucket === undefined) problems.push(`${S3}.bucket: required with storage.backend: s3`)
  if ((storage.s3.accessKeyId === undefined) !== (storage.s3.secretAccessKey === undefined)) {
    problems.push(`${S3}.accessKeyId and ${S3}.secretAccessKey: give both, or neither (the AWS SDK's default credential chain)`)
  }
  const prefix = storage.s3.prefix
  if (prefix.startsWith('/') || prefix.endsWith('/')) problems.push(`${S3}.prefix: no leading or trailing "/"`)
  // A pass lists the whole bucket: more often than every second would be a busy loop of listings.
  if (storage.s3.evictInterval < 1000) problems.push(`${S3}.evictInterval: at least 1s`)
  if (storage.s3.redirectExpiry < 1000 || storage.s3.redirectExpiry > 7 * 24 * 3600 * 1000) {
    problems.push(`${S3}.redirectExpiry: between 1s and 7d`)
  }
  return problems
}
