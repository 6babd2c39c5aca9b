// The settings' declarations (src/config/settings.ts, upstreams.ts) and what is derived from them: the docs'
// tables, the flags and their help, the environment, config check.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parse as parseYamlText, stringify } from 'yaml'
import { FLAGS_HELP } from '../../src/config/args.js'
import { toFileShape } from '../../src/config/check.js'
import { defaultOf, entries, getPath, isList, type Declaration } from '../../src/config/declare.js'
import { renderTables, updateConfigDocs } from '../../src/config/docs.js'
import { resolveConfig, type Config } from '../../src/config/load.js'
import * as v from '../../src/config/values.js'
import { CONFIG_FILE, DEFAULT_CONFIG_FILE, SETTINGS } from '../../src/config/settings.js'
import { UPSTREAM_FIELDS } from '../../src/config/upstreams.js'

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const docsFile = join(root, 'docs/configuration.md')

t.test('docs/configuration.md has the tables the declarations produce (npm run docs writes them)', async (t) => {
  const text = readFileSync(docsFile, 'utf8')
  t.equal(updateConfigDocs(text), text)
  const tables = [...renderTables().values()].join('\n')
  for (const path of Object.keys(SETTINGS)) t.match(tables, `| \`${path}\` |`, `${path} is documented`)
  for (const field of Object.keys(UPSTREAM_FIELDS)) t.match(tables, `| \`${field}\` |`, `upstream field ${field} is documented`)
  t.throws(() => updateConfigDocs(text.replace('<!-- settings: cache -->', '')), /no place for the table "cache"/)
  t.throws(() => updateConfigDocs(`${text}\n<!-- settings: nope -->\n<!-- /settings: nope -->\n`), /"nope" is not a table/)
})

t.test('every declaration is complete and consistent', async (t) => {
  const all: [string, Declaration][] = [
    ['(config file)', CONFIG_FILE],
    ['(default config file)', DEFAULT_CONFIG_FILE],
    ...entries(SETTINGS),
    ...entries(UPSTREAM_FIELDS),
  ]
  const envs = new Set<string>()
  const flags = new Set<string>(['help'])
  for (const [path, d] of all) {
    t.ok(d.doc.length > 0, `${path}: doc`)
    t.doesNotThrow(() => defaultOf(d), `${path}: the default parses`)
    const given = d.overlay ?? d.type
    if (d.env !== undefined || d.flag !== undefined) {
      t.ok((given.element ?? given).parse, `${path}: its type can be given as text`)
    }
    if (d.env !== undefined) {
      t.notOk(envs.has(d.env), `${path}: ${d.env} is used once`)
      envs.add(d.env)
      t.match(FLAGS_HELP + readFileSync(docsFile, 'utf8'), d.env, `${d.env} is in --help or the docs`)
    }
    if (d.flag !== undefined) {
      t.notOk(flags.has(d.flag), `${path}: --${d.flag} is used once`)
      flags.add(d.flag)
      // A boolean's flag is a switch (`--offline`); every other flag names its value.
      const usage = d.type === v.boolean ? `--${d.flag} ` : `--${d.flag} ${d.arg}`
      if (d.type !== v.boolean) t.ok(d.arg, `${path}: --${d.flag} names its value`)
      t.match(FLAGS_HELP, usage, `--${d.flag} is in --help`)
    }
    if (d.append) t.ok(isList(d), `${path}: only a list appends`)
    if (d.resolvedInto !== undefined) t.ok(d.resolvedInto in SETTINGS, `${path}: resolved into a setting`)
    if (d.inherits !== undefined) t.ok(d.inherits in SETTINGS, `${path}: inherits a top-level setting`)
  }
})

/** The paths of the leaves of a resolved object (lists and listen addresses are leaves). */
function leaves(o: unknown, prefix = ''): string[] {
  if (typeof o !== 'object' || o === null || Array.isArray(o) || prefix === 'listen' || prefix.endsWith('.listen')) return [prefix]
  return Object.entries(o).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k))
}

t.test('the resolved Config holds exactly the declared settings', async (t) => {
  const raw = {
    metadata: { redis: 'redis://r:6379' },
    server: { tls: { cert: 'c.pem', key: 'k.pem' }, accelRedirect: { prefix: '/_blobs/' } },
    auth: { htpasswd: 'htpasswd' },
    upstreams: [
      { name: 'ghcr.io', credentials: { token: 't' }, private: true, proxy: 'http://proxy.internal:3128' },
      { name: 'pool.example', endpoints: [{ url: 'https://a.example' }] },
    ],
    cluster: { peers: ['http://10.0.0.2:5000'], self: 'http://10.0.0.1:5000', secret: 'sixteen-chars-at-least' },
    storage: {
      backend: 's3',
      s3: { endpoint: 'http://s3.internal', bucket: 'b', accessKeyId: 'AK', secretAccessKey: 'SK', maxSize: '1TiB', caFile: 'ca.pem' },
    },
  }
  const c = resolveConfig(raw, { cwd: t.testdir({}) })
  const declared = (table: Record<string, Declaration>) =>
    entries(table)
      .filter(([, d]) => d.resolvedInto === undefined)
      .map(([p]) => p)
      .sort()
  t.same(leaves(c).sort(), declared(SETTINGS))
  // `credentials` is only on the first, `endpoints` only on the pool.
  const upstreamKeys = new Set(c.upstreams.flatMap((u) => Object.keys(u)))
  t.same([...upstreamKeys].sort(), declared(UPSTREAM_FIELDS))
  t.notOk('redis' in resolveConfig({}).metadata, 'an optional setting not given is absent')
  // Compile-time: the derived types are the resolved ones, not the file's.
  const size: number = c.cache.maxSize
  const dir: string = c.dataDir
  const redis: string | undefined = c.metadata.redis
  const level: Config['log']['level'] = 'debug'
  t.ok(size > 0 && dir.startsWith('/') && redis && level)
})

t.test('config check prints every setting in the file format, and it loads back the same', async (t) => {
  const cwd = t.testdir({ pw: 'secret\n' })
  const raw = {
    listen: '[::1]:5001',
    cache: { maxSize: '3GiB', pins: ['ghcr.io/o/a:1'], touchInterval: '90s' },
    metadata: { redis: 'redis://u:p@r:6379/0', prefix: 'p' },
    upstreams: [
      {
        name: 'ghcr.io',
        hosts: ['g.example'],
        credentials: { username: 'u', passwordFile: 'pw' },
        tagTtl: '1h30m',
        tagTtlRules: [{ pattern: 'latest', ttl: '1m' }],
        allow: ['o/**'],
        deny: ['o/x'],
        realms: ['auth.example'],
        allowedNetworks: ['10.0.0.0/8'],
        proxy: 'socks5://u:p@proxy.internal:1080',
      },
    ],
    server: {
      maxHeaderSize: '32KiB',
      requestTimeout: '250ms',
      tls: { cert: 'c.pem', key: 'k.pem' },
      accelRedirect: { prefix: '/_blobs/', header: 'X-From-Nginx' },
    },
    auth: {
      htpasswd: 'users',
      anonymous: { cidrs: ['10.0.0.0/8'] },
      rules: [{ repositories: ['ghcr.io/o/**'], users: ['alice'], networks: ['192.168.0.0/16'] }],
    },
    cluster: { peers: ['http://10.0.0.2:5000'], self: 'http://10.0.0.1:5000', secret: 'sixteen-chars-at-least', resolveInterval: '5s' },
    storage: {
      backend: 's3',
      s3: {
        endpoint: 'https://s3.internal',
        region: 'eu-1',
        bucket: 'b',
        prefix: 'p/q',
        pathStyle: true,
        accessKeyIdFile: 'pw',
        secretAccessKey: 'SK',
        redirect: true,
        redirectExpiry: '90s',
        maxSize: '1TiB',
        caFile: 'ca.pem',
        insecureSkipVerify: true,
      },
    },
  }
  const c = resolveConfig(raw, { cwd })
  const shape = toFileShape(c)
  for (const [path, d] of entries(SETTINGS)) {
    if (d.resolvedInto === undefined || d.shownAs !== undefined) t.not(getPath(shape, path), undefined, `${path} is printed`)
  }
  t.match(shape, {
    listen: '[::1]:5001',
    cache: { maxSize: '3GiB', touchInterval: '1m30s' },
    server: { maxHeaderSize: '32KiB', requestTimeout: '250ms' },
    wellKnownUpstreams: false,
  })
  const printed = parseYamlText(stringify(shape, { lineWidth: 0 }))
  t.same(resolveConfig(printed, { cwd }), c, 'round trip, secrets included when not redacted')
})

t.test('an upstream named like an Object property is not taken for a built-in', async (t) => {
  let problems: string[] = []
  try {
    resolveConfig({ upstreams: [{ name: 'constructor' }] })
  } catch (e) {
    problems = (e as { problems: string[] }).problems
  }
  t.match(problems, [/^upstreams\[0\]\.url: required for an upstream that is not built in/])
  const c = resolveConfig({ upstreams: [{ name: 'constructor', url: 'http://x' }] })
  t.match(c.upstreams.at(-1), { name: 'constructor', url: 'http://x', libraryPrefix: false })
})
