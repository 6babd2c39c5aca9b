import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { redactConfig, resolveConfig, type Config } from '../../src/config/load.js'
import { configCheck } from '../../src/config/check.js'
import { problemsOf } from '../helpers/config-problems.js'

const s3 = (extra: Record<string, unknown>) => ({ storage: { backend: 's3', s3: { bucket: 'b', ...extra } } })

t.test('filesystem is the default; s3 settings have their defaults', async (t) => {
  const c = resolveConfig({})
  t.equal(c.storage.backend, 'filesystem')
  t.equal(c.storage.s3.redirect, false)
  t.equal(c.storage.s3.prefix, 'regmirror')
  t.equal(c.storage.s3.redirectExpiry, 5 * 60_000)
  t.equal(c.storage.s3.accessKeyId, undefined)
})

t.test('each secret inline, from a file or from a named variable; redacted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 's3core-cfg-'))
  writeFileSync(join(dir, 'key'), 'AKFILE\n')
  const c = resolveConfig(s3({ accessKeyIdFile: 'key', secretAccessKeyEnv: 'MY_SECRET' }), { env: { MY_SECRET: 'sekrit' }, cwd: dir })
  t.equal(c.storage.s3.accessKeyId, 'AKFILE', 'read from the file, trailing newline dropped')
  t.equal(c.storage.s3.secretAccessKey, 'sekrit', 'read from the named variable')
  const r = redactConfig(c) as Config
  t.equal(r.storage.s3.accessKeyId, '[REDACTED]')
  t.equal(r.storage.s3.secretAccessKey, '[REDACTED]')
  const env = resolveConfig(s3({}), { env: { REGMIRROR_S3_ACCESS_KEY_ID: 'AKENV', REGMIRROR_S3_SECRET_ACCESS_KEY: 'x' } })
  t.equal(env.storage.s3.accessKeyId, 'AKENV', 'the plain setting has an environment variable')
})

t.test('config check prints neither secret', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 's3core-cfg-'))
  const file = join(dir, 'c.yaml')
  writeFileSync(file, 'storage:\n  backend: s3\n  s3: { bucket: b, accessKeyId: AKIAVISIBLE, secretAccessKeyEnv: SK }\n')
  let text = ''
  const out = new Writable({
    write(c: Buffer, _e, cb) {
      text += c.toString()
      cb()
    },
  })
  const quiet = new Writable({ write: (_c, _e, cb) => cb() })
  t.equal(await configCheck(['--config', file], out, quiet, { env: { SK: 'topsecretvalue' }, cwd: dir }), 0)
  t.notMatch(text, 'AKIAVISIBLE')
  t.notMatch(text, 'topsecretvalue')
  t.match(text, 'accessKeyId: "[REDACTED]"')
})

t.test('problems: combinations that cannot work', async (t) => {
  t.match(
    problemsOf(() => resolveConfig({ storage: { backend: 's3' } })),
    [/storage\.s3\.bucket: required/],
  )
  t.match(
    problemsOf(() => resolveConfig(s3({ accessKeyId: 'a' }))),
    [/give both, or neither/],
  )
  t.match(
    problemsOf(() => resolveConfig(s3({ accessKeyId: 'a', accessKeyIdEnv: 'X', secretAccessKey: 's' }), { env: { X: 'y' } })),
    [/use only one of storage\.s3\.accessKeyId, storage\.s3\.accessKeyIdEnv/],
  )
  t.match(
    problemsOf(() => resolveConfig(s3({ accessKeyIdEnv: 'UNSET' }))),
    [/UNSET is not set/],
  )
  t.match(
    problemsOf(() => resolveConfig(s3({ accessKeyIdFile: '/nonexistent/s3core-key' }))),
    [/cannot read secret file/],
  )
  t.match(
    problemsOf(() => resolveConfig(s3({ prefix: 'a/' }))),
    [/prefix: no leading or trailing/],
  )
  t.match(
    problemsOf(() => resolveConfig(s3({ redirectExpiry: '8d' }))),
    [/redirectExpiry: between 1s and 7d/],
  )
  t.match(
    problemsOf(() => resolveConfig(s3({ evictInterval: '0s' }))),
    [/evictInterval: at least 1s/],
  )
  t.match(
    problemsOf(() => resolveConfig({ storage: { backend: 'gcs' } })),
    [/must be one of filesystem, s3/],
  )
  // The filesystem backend does not need the bucket's settings.
  t.equal(resolveConfig({ storage: { s3: { accessKeyId: 'a' } } }).storage.backend, 'filesystem')
})
