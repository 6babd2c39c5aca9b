import { execFileSync } from 'node:child_process'
import { writeFileSync, chmodSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import t from 'tap'
import { parse as parseYamlText } from 'yaml'
import {
  ConfigError,
  autoMaxSize,
  filesystemSize,
  loadConfig,
  parseDuration,
  parseSize,
  redactConfig,
  resolveConfig,
  type Config,
} from '../../src/config/load.js'
import { FLAGS_HELP, parseFlags } from '../../src/config/args.js'
import { configCheck } from '../../src/config/check.js'
import { formatDuration, formatSize } from '../../src/config/durations.js'
import { WELL_KNOWN_UPSTREAMS, repoAllowed, ttlFor } from '../../src/config/schema.js'
import { problemsOf } from '../helpers/config-problems.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const root = resolve(here, '../..')
const fixtures = join(root, 'test/fixtures/config')
const GiB = 1024 ** 3

async function problemsOfAsync(p: Promise<unknown>): Promise<string[]> {
  try {
    await p
  } catch (e) {
    if (e instanceof ConfigError) return e.problems
    throw e
  }
  throw new Error('expected a ConfigError')
}

function upstream(c: Config, name: string) {
  return c.upstreams.find((u) => u.name === name)
}

class Sink extends Writable {
  text = ''
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString()
    cb()
  }
}

t.test('durations', async (t) => {
  t.equal(parseDuration('30s'), 30_000)
  t.equal(parseDuration('5m'), 300_000)
  t.equal(parseDuration('1h'), 3_600_000)
  t.equal(parseDuration('1h30m'), 5_400_000)
  t.equal(parseDuration('250ms'), 250)
  t.equal(parseDuration('1m30s500ms'), 90_500)
  t.equal(parseDuration('2d'), 172_800_000)
  t.equal(parseDuration('1.5s'), 1500)
  t.equal(parseDuration(90), 90_000, 'bare number = seconds')
  t.equal(parseDuration('90'), 90_000, 'numeric string = seconds')
  t.equal(parseDuration('0'), 0)
  for (const bad of ['', 'soon', '5x', '-5s', '5 m', 'm5', '1h1h', 's', '1h 30m', '1e3']) {
    t.throws(() => parseDuration(bad), { message: `not a duration: ${JSON.stringify(bad)}` }, `rejects ${JSON.stringify(bad)}`)
  }
  t.throws(() => parseDuration(-1))
  t.throws(() => parseDuration(Number.NaN))
  for (const ms of [0, 250, 1000, 90_500, 5_400_000, 86_400_000 + 1]) t.equal(parseDuration(formatDuration(ms)), ms, `round trip ${ms}`)
})

t.test('sizes', async (t) => {
  t.equal(parseSize('1024'), 1024)
  t.equal(parseSize(1024), 1024)
  t.equal(parseSize('500MiB'), 500 * 1024 ** 2)
  t.equal(parseSize('50GiB'), 50 * GiB)
  t.equal(parseSize('10GB'), 10_000_000_000)
  t.equal(parseSize('10gb'), 10_000_000_000, 'case-insensitive')
  t.equal(parseSize('1.5KiB'), 1536)
  t.equal(parseSize('2TiB'), 2 * 1024 ** 4)
  t.equal(parseSize('100B'), 100)
  for (const bad of ['', 'lots', '10XB', '-1', 'GiB', '1.2.3MB']) {
    t.throws(() => parseSize(bad), { message: `not a size: ${JSON.stringify(bad)}` }, `rejects ${JSON.stringify(bad)}`)
  }
  t.throws(() => parseSize(1.5), 'fractional byte count')
  t.equal(formatSize(50 * GiB), '50GiB')
  t.equal(formatSize(1000), '1000')
})

t.test('auto max size', async (t) => {
  t.equal(autoMaxSize(10 * GiB), Math.floor(8 * GiB), '80% of a small filesystem')
  t.equal(autoMaxSize(1000 * GiB), 50 * GiB, 'capped at 50GiB')
  const tmp = t.testdir({})
  const total = filesystemSize(join(tmp, 'does/not/exist/yet'))
  t.ok(total !== undefined && total > 0, 'measures the nearest existing ancestor')
  const c = resolveConfig({ dataDir: join(tmp, 'data') })
  t.equal(c.cache.maxSize, autoMaxSize(total!), 'default maxSize is auto')
  t.equal(resolveConfig({ dataDir: tmp, cache: { maxSize: 'auto' } }).cache.maxSize, autoMaxSize(total!))
})

t.test('defaults', async (t) => {
  const cwd = t.testdir({})
  const c = resolveConfig({}, { cwd })
  t.same(c.listen, { host: '0.0.0.0', port: 5000 })
  t.equal(c.dataDir, join(cwd, 'data'), 'dataDir resolved against cwd')
  t.equal(c.log.level, 'info')
  t.equal(c.defaultUpstream, 'docker.io')
  t.same(
    c.upstreams.map((u) => u.name),
    Object.keys(WELL_KNOWN_UPSTREAMS),
  )
  const hub = upstream(c, 'docker.io')!
  t.same(hub, {
    name: 'docker.io',
    url: 'https://registry-1.docker.io',
    hosts: [],
    libraryPrefix: true,
    offline: false,
    tagTtl: 300_000,
    tagTtlRules: [],
    negativeTtl: 30_000,
    serveStaleOn: [],
    quotaReserve: 10,
    quotaMaxStale: 86_400_000,
    maxConcurrent: 0,
    maxRequestsPerSecond: 0,
    maxMbps: 0,
    maxQueueWait: 30_000,
    allow: [],
    deny: [],
    realms: [],
    allowedNetworks: [],
  })
  t.equal(upstream(c, 'ghcr.io')!.libraryPrefix, false)
  t.equal(upstream(c, 'public.ecr.aws')!.url, 'https://public.ecr.aws')
  t.same(c.cache.pins, [])
  t.equal(c.cache.touchInterval, 60_000)
  t.same(c.metadata, { prefix: 'regmirror' })
  t.same(c.timeouts, { connect: 10_000, headers: 30_000, bodyIdle: 30_000, shutdown: 30_000 })
  t.same(c.retries, { attempts: 3, resumeAttempts: 5, backoff: 200 })
  t.same(c.offline, { failureThreshold: 5, coolDown: 30_000 })
  t.same(c.server, {
    headersTimeout: 20_000,
    requestTimeout: 0,
    keepAliveTimeout: 65_000,
    idleTimeout: 300_000,
    maxHeaderSize: 16_384,
    tls: { listen: { host: '0.0.0.0', port: 5443 } },
    reloadInterval: 10_000,
    http2: { maxConcurrentStreams: 250 },
    accelRedirect: { header: 'x-regmirror-accel' },
    workers: availableParallelism(),
  })
  t.equal(resolveConfig({ server: { workers: 1 } }, { cwd }).server.workers, 1, 'one worker: a single process')
  t.same(c.auth, { realm: 'regmirror', anonymous: { cidrs: [] }, rules: [] })
  t.same(resolveConfig(null, { cwd }), c, 'an empty YAML document means defaults')
})

t.test('server.accelRedirect: a URI prefix that starts and ends with /, a header name matched without case', async (t) => {
  const accel = (raw: unknown) => resolveConfig({ server: { accelRedirect: raw } }).server.accelRedirect
  t.same(accel({ prefix: '/_blobs/', header: 'X-From-Nginx' }), { prefix: '/_blobs/', header: 'x-from-nginx' })
  for (const prefix of ['_blobs/', '/_blobs', '/a b/', '/x/\r\nSet-Cookie: y/']) {
    t.match(problemsOf(() => accel({ prefix })).join('\n'), /server\.accelRedirect\.prefix/, `${JSON.stringify(prefix)} is refused`)
  }
  t.match(problemsOf(() => accel({ header: 'X Accel' })).join('\n'), /server\.accelRedirect\.header/)
})

t.test('listen forms', async (t) => {
  const l = (listen: unknown) => resolveConfig({ listen }).listen
  t.same(l('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 })
  t.same(l('[::]:5000'), { host: '::', port: 5000 })
  t.same(l(':5000'), { host: '0.0.0.0', port: 5000 })
  t.same(l('localhost:0'), { host: 'localhost', port: 0 })
  t.same(l(5001), { host: '0.0.0.0', port: 5001 })
  t.same(
    problemsOf(() => l('localhost')),
    ['listen: must be HOST:PORT, [IPv6]:PORT or :PORT, got "localhost"'],
  )
  t.same(
    problemsOf(() => l('x:70000')),
    ['listen: port must be 0-65535, got "x:70000"'],
  )
})

t.test('the in-memory form other tests use', async (t) => {
  const tmp = t.testdir({})
  const c = resolveConfig({ dataDir: tmp, upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:1234/' }] })
  t.equal(upstream(c, 'docker.io')!.url, 'http://127.0.0.1:1234', 'trailing slash removed')
  t.equal(upstream(c, 'docker.io')!.libraryPrefix, true, 'built-in defaults kept when merging')
  t.equal(c.dataDir, tmp)
})

t.test('full upstream entry', async (t) => {
  const tmp = t.testdir({ ghcr: 'hunter2\n' })
  const c = resolveConfig(
    {
      dataDir: tmp,
      upstreams: [
        {
          name: 'ghcr.io',
          credentials: { username: 'bot', passwordFile: join(tmp, 'ghcr') },
          tagTtl: '10m',
          tagTtlRules: [
            { pattern: 'latest', ttl: '1m' },
            { pattern: 'semver', ttl: '1h' },
          ],
          allow: ['myorg/**'],
          deny: ['myorg/secret-*'],
          realms: ['Auth.Example.com'],
          hosts: ['GHCR.Mirror.example.com:8443'],
        },
        { name: 'quay.io', enabled: false },
        { name: 'registry.internal:5000', url: 'http://10.0.0.5:5000', hosts: ['internal.mirror.example.com'] },
      ],
    },
    { cwd: tmp },
  )
  const g = upstream(c, 'ghcr.io')!
  t.same(g.credentials, [{ username: 'bot', password: 'hunter2' }], 'secret file read, trailing newline removed')
  t.equal(g.url, 'https://ghcr.io')
  t.equal(g.tagTtl, 600_000)
  t.same(g.tagTtlRules, [
    { pattern: 'latest', ttl: 60_000 },
    { pattern: 'semver', ttl: 3_600_000 },
  ])
  t.same(g.allow, ['myorg/**'])
  t.same(g.realms, ['auth.example.com'], 'realms lower-cased')
  t.same(g.hosts, ['ghcr.mirror.example.com:8443'], 'hosts lower-cased')
  t.notOk(upstream(c, 'quay.io'), 'disabled built-in is gone')
  const r = upstream(c, 'registry.internal:5000')!
  t.equal(r.url, 'http://10.0.0.5:5000')
  t.equal(r.libraryPrefix, false)
  t.equal(r.tagTtl, 300_000)
  t.same(r.hosts, ['internal.mirror.example.com'])
  t.equal(c.upstreams.at(-1)!.name, 'registry.internal:5000', 'custom upstreams follow the built-ins')
})

t.test('wellKnownUpstreams: false keeps only the listed upstreams', async (t) => {
  const c = resolveConfig({
    wellKnownUpstreams: false,
    defaultUpstream: 'ghcr.io',
    upstreams: [{ name: 'ghcr.io' }, { name: 'my.reg', url: 'https://my.reg' }],
  })
  t.same(
    c.upstreams.map((u) => u.name),
    ['ghcr.io', 'my.reg'],
  )
  t.equal(upstream(c, 'ghcr.io')!.url, 'https://ghcr.io', 'a listed built-in still gets its url')
  t.same(
    problemsOf(() => resolveConfig({ wellKnownUpstreams: false })),
    ['defaultUpstream: upstream "docker.io" is not configured or is disabled (enabled: none)'],
  )
})

t.test('one problem per invalid field, with its path', async (t) => {
  const cases: [string, unknown, string][] = [
    ['bad URL', { upstreams: [{ name: 'x.io', url: 'ftp://x.io' }] }, 'upstreams[0].url: must be an http or https URL'],
    ['not a URL', { upstreams: [{ name: 'x.io', url: 'x.io' }] }, 'upstreams[0].url: must be an http or https URL'],
    [
      'credentials in URL',
      { upstreams: [{ name: 'x.io', url: 'https://u:p@x.io' }] },
      'upstreams[0].url: must not contain credentials (use credentials: instead)',
    ],
    ['unknown top-level key', { colour: 'blue' }, 'colour: unknown key'],
    ['unknown nested key', { upstreams: [{ name: 'ghcr.io', ttl: '5m' }] }, 'upstreams[0].ttl: unknown key'],
    ['unknown section key', { timeouts: { read: '5s' } }, 'timeouts.read: unknown key'],
    [
      'duplicate name',
      { upstreams: [{ name: 'ghcr.io' }, { name: 'quay.io' }, { name: 'ghcr.io', tagTtl: '1m' }] },
      'upstreams[2].name: duplicate upstream "ghcr.io" (also upstreams[0])',
    ],
    ['bad duration', { timeouts: { connect: 'soon' } }, 'timeouts.connect: not a duration: "soon"'],
    [
      'bad rule ttl',
      { upstreams: [{ name: 'ghcr.io', tagTtlRules: [{ pattern: 'x', ttl: '1y' }] }] },
      'upstreams[0].tagTtlRules[0].ttl: not a duration: "1y"',
    ],
    ['bad size', { cache: { maxSize: 'lots' } }, 'cache.maxSize: not a size: "lots"'],
    ['wrong type', { cache: { maxSize: true } }, 'cache.maxSize: expected a size like 500MiB, got boolean'],
    [
      'missing url',
      { upstreams: [{ name: 'custom.example' }] },
      'upstreams[0].url: required for an upstream that is not built in (built in: ' + Object.keys(WELL_KNOWN_UPSTREAMS).join(', ') + ')',
    ],
    ['missing name', { upstreams: [{ url: 'https://x.io' }] }, 'upstreams[0].name: expected an upstream name, got undefined'],
    [
      'bad name',
      { upstreams: [{ name: 'Bad_Name', url: 'https://x.io' }] },
      `upstreams[0].name: not a valid upstream name: "Bad_Name" (lower-case letters, digits, '.', '-', optional :port)`,
    ],
    [
      'bad defaultUpstream',
      { defaultUpstream: 'quay.io', upstreams: [{ name: 'quay.io', enabled: false }] },
      'defaultUpstream: upstream "quay.io" is not configured or is disabled',
    ],
    ['bad log level', { log: { level: 'loud' } }, 'log.level: must be one of fatal, error, warn, info, debug, trace, silent, got "loud"'],
    ['bad redis', { metadata: { redis: 'http://r:6379' } }, 'metadata.redis: must be a redis:// or rediss:// URL'],
    ['bad integer', { retries: { attempts: 1.5 } }, 'retries.attempts: must be an integer'],
    ['negative', { retries: { attempts: -1 } }, 'retries.attempts: must be >= 0'],
    ['section not a mapping', { timeouts: '5s' }, 'timeouts: expected a mapping, got string'],
    ['upstreams not a list', { upstreams: { name: 'x' } }, 'upstreams: expected a list, got a mapping'],
    [
      'bad pin',
      { cache: { pins: ['alpine'] } },
      'cache.pins[0]: not an image reference UPSTREAM/REPO:TAG or UPSTREAM/REPO@sha256:DIGEST: "alpine"',
    ],
    [
      'pin of unknown upstream',
      { cache: { pins: ['nope.io/a/b:1'] } },
      'cache.pins[0]: upstream "nope.io" of nope.io/a/b:1 is not configured or is disabled',
    ],
    [
      'password and token',
      { upstreams: [{ name: 'ghcr.io', credentials: { username: 'u', password: 'p', token: 't' } }] },
      'upstreams[0].credentials: use either a password or a token, not both',
    ],
    [
      'password without username',
      { upstreams: [{ name: 'ghcr.io', credentials: { password: 'p' } }] },
      'upstreams[0].credentials.username: a password needs a username',
    ],
    [
      'unset secret env',
      { upstreams: [{ name: 'ghcr.io', credentials: { tokenEnv: 'NO_SUCH_VAR' } }] },
      'upstreams[0].credentials.tokenEnv: environment variable NO_SUCH_VAR is not set',
    ],
    ['root not a mapping', ['a'], '(root): expected a mapping of configuration keys'],
  ]
  for (const [name, raw, problem] of cases) {
    const problems = problemsOf(() => resolveConfig(raw))
    t.ok(
      problems.some((p) => p.startsWith(problem)),
      `${name}: ${problem}`,
      { found: problems },
    )
  }
})

t.test('unreadable secret file: the path is reported, never a secret', async (t) => {
  const tmp = t.testdir({ empty: '' })
  const problems = problemsOf(() =>
    resolveConfig(
      {
        upstreams: [
          { name: 'ghcr.io', credentials: { username: 'bot', passwordFile: 'missing-secret' } },
          { name: 'quay.io', credentials: { tokenFile: join(tmp, 'empty') } },
        ],
      },
      { cwd: tmp },
    ),
  )
  t.same(problems, [
    `upstreams[0].credentials.passwordFile: cannot read secret file ${join(tmp, 'missing-secret')} (ENOENT)`,
    `upstreams[1].credentials.tokenFile: secret file ${join(tmp, 'empty')} is empty`,
  ])
  const e = (() => {
    try {
      resolveConfig({ upstreams: [{ name: 'ghcr.io', credentials: { username: 'bot', password: 12345 } }] })
    } catch (err) {
      return err as ConfigError
    }
    return undefined
  })()
  t.ok(e instanceof ConfigError)
  t.equal(e!.code, 'CONFIG_INVALID')
  t.same(e!.problems, ['upstreams[0].credentials.password: expected string, got number'])
  t.notMatch(e!.message, /12345/, 'type errors do not echo the value')
})

t.test('every problem is reported at once', async (t) => {
  const raw = parseYamlText(
    `listen: somewhere
defaultUpstream: nowhere.example
colour: blue
upstreams:
  - name: ghcr.io
    tagTtl: soon
  - name: custom.example
  - name: bad.example
    url: ftp://bad.example
  - name: ghcr.io
cache:
  maxSize: lots
`,
  )
  const problems = problemsOf(() => resolveConfig(raw, { env: { REGMIRROR_MAX_SIZE: 'huge' }, flags: { tagTtl: 'later' } }))
  const expected = [
    'listen: must be HOST:PORT',
    'colour: unknown key',
    'upstreams[0].tagTtl: not a duration: "soon"',
    'upstreams[1].url: required for an upstream that is not built in',
    'upstreams[2].url: must be an http or https URL',
    'upstreams[3].name: duplicate upstream "ghcr.io" (also upstreams[0])',
    'cache.maxSize: not a size: "lots"',
    'defaultUpstream: upstream "nowhere.example" is not configured',
    'REGMIRROR_MAX_SIZE: not a size: "huge"',
    '--tag-ttl: not a duration: "later"',
  ]
  for (const p of expected)
    t.ok(
      problems.some((x) => x.startsWith(p)),
      p,
      { found: problems },
    )
  t.equal(problems.length, expected.length, 'nothing else', { found: problems })
  const e = (() => {
    try {
      resolveConfig(raw)
    } catch (err) {
      return err as ConfigError
    }
    return undefined
  })()
  t.match(e!.message, /^invalid configuration \(8 problems\):\n {2}listen: /)
})

t.test('YAML files', async (t) => {
  t.test('syntax error has file, line and column', async (t) => {
    const file = join(fixtures, 'syntax-error.yaml')
    const problems = await problemsOfAsync(loadConfig({ flags: { config: file }, env: {} }))
    t.equal(problems.length, 1, 'one problem', { found: problems })
    t.match(problems[0], new RegExp(`^${file.replace(/[.]/g, '\\.')}:\\d+:\\d+: `))
  })
  t.test('duplicate key is an error with its position', async (t) => {
    const tmp = t.testdir({ 'c.yaml': 'listen: :1\nlisten: :2\n' })
    const problems = await problemsOfAsync(loadConfig({ flags: { config: 'c.yaml' }, env: {}, cwd: tmp }))
    t.match(problems[0], /c\.yaml:2:1: .*unique/i)
  })
  t.test('a file with many problems', async (t) => {
    const problems = await problemsOfAsync(loadConfig({ env: { REGMIRROR_CONFIG: join(fixtures, 'many-problems.yaml') } }))
    t.equal(problems.length, 8, 'all reported', { found: problems })
  })
  t.test('missing file', async (t) => {
    const tmp = t.testdir({})
    t.same(await problemsOfAsync(loadConfig({ flags: { config: 'nope.yaml' }, env: {}, cwd: tmp })), [
      `--config: cannot read ${join(tmp, 'nope.yaml')} (ENOENT)`,
    ])
    t.same(await problemsOfAsync(loadConfig({ env: { REGMIRROR_CONFIG: 'nope.yaml' }, cwd: tmp })), [
      `REGMIRROR_CONFIG: cannot read ${join(tmp, 'nope.yaml')} (ENOENT)`,
    ])
  })
  t.test('valid file; --config wins over REGMIRROR_CONFIG', async (t) => {
    const cwd = t.testdir({})
    const c = await loadConfig({
      flags: { config: join(fixtures, 'valid.yaml') },
      env: { REGMIRROR_CONFIG: join(fixtures, 'syntax-error.yaml') },
      cwd,
    })
    t.same(c.listen, { host: '127.0.0.1', port: 5555 })
    t.equal(c.dataDir, join(cwd, 'cache-data'))
    t.equal(c.log.level, 'debug')
    t.equal(upstream(c, 'ghcr.io')!.url, 'http://127.0.0.1:9999')
    t.equal(upstream(c, 'ghcr.io')!.tagTtl, 90_000, 'bare number = seconds')
    t.equal(c.cache.maxSize, 10_000_000_000)
  })
  // The container image sets REGMIRROR_DEFAULT_CONFIG=/etc/regmirror/regmirror.yaml: a mounted file is read, a
  // container without one starts on defaults, and a file named explicitly still wins.
  t.test('REGMIRROR_DEFAULT_CONFIG: read when it exists, no file when it does not', async (t) => {
    const cwd = t.testdir({ 'default.yaml': 'listen: 127.0.0.1:5601\n', 'other.yaml': 'listen: 127.0.0.1:5602\n' })
    const listen = async (env: Record<string, string>, flags = {}) => (await loadConfig({ env, flags, cwd })).listen
    t.same(await listen({ REGMIRROR_DEFAULT_CONFIG: 'default.yaml' }), { host: '127.0.0.1', port: 5601 }, 'present: read')
    t.same(await listen({ REGMIRROR_DEFAULT_CONFIG: 'absent.yaml' }), { host: '0.0.0.0', port: 5000 }, 'absent: defaults')
    t.same(
      await listen({ REGMIRROR_DEFAULT_CONFIG: 'default.yaml', REGMIRROR_CONFIG: 'other.yaml' }),
      { host: '127.0.0.1', port: 5602 },
      'REGMIRROR_CONFIG wins',
    )
    t.same(
      await listen({ REGMIRROR_DEFAULT_CONFIG: 'default.yaml' }, { config: 'other.yaml' }),
      { host: '127.0.0.1', port: 5602 },
      '--config wins',
    )
    t.same(
      await problemsOfAsync(loadConfig({ env: { REGMIRROR_DEFAULT_CONFIG: 'default.yaml', REGMIRROR_CONFIG: 'absent.yaml' }, cwd })),
      [`REGMIRROR_CONFIG: cannot read ${join(cwd, 'absent.yaml')} (ENOENT)`],
      'a file named explicitly must exist, even with a default set',
    )
    // Present but not a readable file (here a directory): a mistake to report, not a reason to start on defaults.
    t.same(await problemsOfAsync(loadConfig({ env: { REGMIRROR_DEFAULT_CONFIG: '.' }, cwd })), [
      `REGMIRROR_DEFAULT_CONFIG: cannot read ${cwd} (EISDIR)`,
    ])
  })
  t.test('no file: defaults only', async (t) => {
    const c = await loadConfig({ env: {} })
    t.equal(c.upstreams.length, Object.keys(WELL_KNOWN_UPSTREAMS).length)
  })
  t.test('regmirror.example.yaml loads without problems', async (t) => {
    const c = await loadConfig({ flags: { config: join(root, 'regmirror.example.yaml') }, env: {}, cwd: t.testdir({}) })
    t.notOk(upstream(c, 'quay.io'))
    t.ok(upstream(c, 'registry.internal:5000'))
    t.same(c.cache.pins, ['docker.io/library/alpine:3.20'])
    t.equal(ttlFor(upstream(c, 'docker.io')!, 'library/alpine', '3.20'), 3_600_000)
  })
})

t.test('environment overrides the file', async (t) => {
  const tmp = t.testdir({})
  const file = {
    listen: '0.0.0.0:5000',
    dataDir: './a',
    log: { level: 'warn' },
    tagTtl: '1m',
    defaultUpstream: 'docker.io',
    upstreams: [{ name: 'ghcr.io', tagTtl: '10m' }],
    cache: { maxSize: '1GiB' },
    metadata: { redis: 'redis://file:6379' },
  }
  const env = {
    REGMIRROR_LISTEN: '127.0.0.1:6000',
    REGMIRROR_DATA: '/srv/regmirror',
    REGMIRROR_MAX_SIZE: '2GiB',
    REGMIRROR_LOG_LEVEL: 'DEBUG',
    REGMIRROR_REDIS: 'rediss://env:6380/1',
    REGMIRROR_DEFAULT_UPSTREAM: 'ghcr.io',
    REGMIRROR_TAG_TTL: '2m',
    REGMIRROR_UPSTREAMS: 'docker.io=http://127.0.0.1:7000/, my.reg:5000=http://10.1.1.1:5000',
  }
  const c = resolveConfig(file, { env, cwd: tmp })
  t.same(c.listen, { host: '127.0.0.1', port: 6000 })
  t.equal(c.dataDir, '/srv/regmirror')
  t.equal(c.cache.maxSize, 2 * GiB)
  t.equal(c.log.level, 'debug')
  t.equal(c.metadata.redis, 'rediss://env:6380/1')
  t.equal(c.defaultUpstream, 'ghcr.io')
  t.equal(upstream(c, 'docker.io')!.tagTtl, 120_000, 'REGMIRROR_TAG_TTL is the default tag TTL')
  t.equal(upstream(c, 'ghcr.io')!.tagTtl, 600_000, "an upstream's own tagTtl wins")
  t.equal(upstream(c, 'docker.io')!.url, 'http://127.0.0.1:7000')
  t.equal(upstream(c, 'docker.io')!.libraryPrefix, true)
  t.equal(upstream(c, 'my.reg:5000')!.url, 'http://10.1.1.1:5000')
  const c2 = resolveConfig(file, { env: { REGMIRROR_LISTEN: '', REGMIRROR_DATA: '  ' }, cwd: tmp })
  t.same(c2.listen, { host: '0.0.0.0', port: 5000 }, 'empty env values count as unset')
  t.equal(c2.dataDir, join(tmp, 'a'))
  t.same(
    problemsOf(() =>
      resolveConfig(
        {},
        { env: { REGMIRROR_MAX_SIZE: 'lots', REGMIRROR_LOG_LEVEL: 'loud', REGMIRROR_UPSTREAMS: 'foo', REGMIRROR_LISTEN: 'x' } },
      ),
    ),
    [
      'REGMIRROR_LISTEN: must be HOST:PORT, [IPv6]:PORT or :PORT, got "x"',
      'REGMIRROR_MAX_SIZE: not a size: "lots"',
      'REGMIRROR_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
      'REGMIRROR_UPSTREAMS: must be NAME=URL, got "foo"',
    ],
  )
  t.match(
    problemsOf(() => resolveConfig({}, { env: { REGMIRROR_DEFAULT_UPSTREAM: 'nope.io' } })),
    [/^REGMIRROR_DEFAULT_UPSTREAM: upstream "nope\.io" is not configured or is disabled/],
  )
})

t.test('flags override the environment', async (t) => {
  const tmp = t.testdir({})
  const env = {
    REGMIRROR_LISTEN: '127.0.0.1:6000',
    REGMIRROR_DATA: '/srv/env',
    REGMIRROR_MAX_SIZE: '2GiB',
    REGMIRROR_LOG_LEVEL: 'debug',
    REGMIRROR_REDIS: 'redis://env:6379',
    REGMIRROR_DEFAULT_UPSTREAM: 'ghcr.io',
    REGMIRROR_TAG_TTL: '2m',
    REGMIRROR_UPSTREAMS: 'docker.io=http://env:1,quay.io=http://envquay:1',
  }
  const { flags, positionals } = parseFlags([
    'serve',
    '--listen',
    ':7000',
    '--data',
    'flagdata',
    '--max-size',
    '3GiB',
    '--log-level',
    'error',
    '--redis',
    'redis://flag:6379',
    '--default-upstream',
    'quay.io',
    '--tag-ttl',
    '3m',
    '--upstream',
    'docker.io=http://flag:2',
    '--upstream',
    'local.test:8080=http://127.0.0.1:8080',
    '--pin',
    'docker.io/library/alpine:3.20',
    '--pin',
    'local.test:8080/team/app@sha256:' + 'a'.repeat(64),
  ])
  t.same(positionals, ['serve'])
  const c = resolveConfig({ cache: { pins: ['ghcr.io/o/a:1'] } }, { env, flags, cwd: tmp })
  t.same(c.listen, { host: '0.0.0.0', port: 7000 })
  t.equal(c.dataDir, join(tmp, 'flagdata'))
  t.equal(c.cache.maxSize, 3 * GiB)
  t.equal(c.log.level, 'error')
  t.equal(c.metadata.redis, 'redis://flag:6379')
  t.equal(c.defaultUpstream, 'quay.io')
  t.equal(upstream(c, 'docker.io')!.tagTtl, 180_000)
  t.equal(upstream(c, 'docker.io')!.url, 'http://flag:2', '--upstream wins over REGMIRROR_UPSTREAMS')
  t.equal(upstream(c, 'quay.io')!.url, 'http://envquay:1', 'env upstreams not named by a flag stay')
  t.equal(upstream(c, 'local.test:8080')!.url, 'http://127.0.0.1:8080', '--upstream adds a plain http upstream')
  t.same(
    c.cache.pins,
    ['ghcr.io/o/a:1', 'docker.io/library/alpine:3.20', 'local.test:8080/team/app@sha256:' + 'a'.repeat(64)],
    '--pin appends',
  )
})

t.test('--upstream makes a disabled or url-less entry usable', async (t) => {
  const c = resolveConfig(
    {
      upstreams: [
        { name: 'quay.io', enabled: false },
        { name: 'custom.example', tagTtl: '1m' },
      ],
    },
    { flags: { upstream: ['quay.io=http://127.0.0.1:1', 'custom.example=https://custom.example'] } },
  )
  t.equal(upstream(c, 'quay.io')!.url, 'http://127.0.0.1:1')
  t.equal(upstream(c, 'custom.example')!.url, 'https://custom.example')
  t.equal(upstream(c, 'custom.example')!.tagTtl, 60_000, 'file settings of that entry kept')
  t.same(
    problemsOf(() => resolveConfig({}, { flags: { upstream: ['x.io=ftp://x.io', 'Bad=http://a'] } })),
    [
      '--upstream: x.io: must be an http or https URL',
      `--upstream: not a valid upstream name: "Bad" (lower-case letters, digits, '.', '-', optional :port)`,
    ],
  )
})

t.test('parseFlags', async (t) => {
  t.same(parseFlags(['--config', 'a.yaml', '-h']).flags, { config: 'a.yaml', help: true })
  t.same(parseFlags(['--listen=:1']).flags, { listen: ':1' })
  t.same(
    problemsOf(() => parseFlags(['--bogus'])),
    ['--bogus: unknown flag (see --help)'],
  )
  t.throws(() => parseFlags(['--listen']), ConfigError, 'missing value')
  for (const f of [
    '--config',
    '--listen',
    '--data',
    '--upstream',
    '--default-upstream',
    '--max-size',
    '--tag-ttl',
    '--redis',
    '--log-level',
    '--pin',
    '--help',
  ]) {
    t.match(FLAGS_HELP, f, `help mentions ${f}`)
  }
})

t.test('credentials from file and env are resolved and redacted', async (t) => {
  const tmp = t.testdir({ 'ghcr-pass': 's3cret-from-file\n' })
  const raw = {
    upstreams: [
      { name: 'ghcr.io', credentials: { username: 'bot', passwordFile: 'ghcr-pass' } },
      { name: 'quay.io', credentials: { tokenEnv: 'QUAY_TOKEN' } },
      { name: 'docker.io', credentials: { username: 'me', passwordEnv: 'HUB_PASS' } },
    ],
    metadata: { redis: 'redis://user:redispass@redis:6379/0' },
  }
  const env = { QUAY_TOKEN: 's3cret-token', HUB_PASS: 's3cret-hub' }
  const c = resolveConfig(raw, { env, cwd: tmp })
  t.same(upstream(c, 'ghcr.io')!.credentials, [{ username: 'bot', password: 's3cret-from-file' }])
  t.same(upstream(c, 'quay.io')!.credentials, [{ token: 's3cret-token' }])
  t.same(upstream(c, 'docker.io')!.credentials, [{ username: 'me', password: 's3cret-hub' }])
  t.notOk(upstream(c, 'gcr.io')!.credentials, 'no credentials key when none configured')

  const r = redactConfig(c) as Config
  t.same(r.upstreams.find((u) => u.name === 'ghcr.io')!.credentials, [{ username: '[REDACTED]', password: '[REDACTED]' }])
  t.same(r.upstreams.find((u) => u.name === 'quay.io')!.credentials, [{ token: '[REDACTED]' }])
  t.equal(r.metadata.redis, 'redis://user:[REDACTED]@redis:6379/0')
  const text = JSON.stringify(r)
  t.notMatch(text, /s3cret|redispass/, 'no secret in the redacted copy')
  t.equal(upstream(c, 'ghcr.io')!.credentials![0]!.password, 's3cret-from-file', 'the original is untouched')

  const yamlFile = join(tmp, 'c.yaml')
  writeFileSync(
    yamlFile,
    `upstreams:\n  - name: ghcr.io\n    credentials: { username: bot, passwordFile: ghcr-pass }\n  - name: quay.io\n    credentials: { token: s3cret-inline }\nmetadata: { redis: "redis://:redispass@r:6379" }\n`,
  )
  const out = new Sink()
  const err = new Sink()
  const code = await configCheck(['--config', yamlFile], out, err, { env, cwd: tmp })
  t.equal(code, 0, 'exit code 0', { err: err.text })
  t.equal(err.text, '')
  t.notMatch(out.text, /s3cret|redispass/, 'config check never prints a secret')
  t.match(out.text, '[REDACTED]')
})

t.test('config check', async (t) => {
  const tmp = t.testdir({})
  t.test('prints the effective config, which loads back to the same Config', async (t) => {
    const out = new Sink()
    const err = new Sink()
    const env = { REGMIRROR_LISTEN: '[::1]:5001' }
    const code = await configCheck(['--config', join(root, 'regmirror.example.yaml'), '--tag-ttl', '7m'], out, err, { env, cwd: tmp })
    t.equal(code, 0)
    t.match(out.text, /^# effective configuration/)
    const printed = parseYamlText(out.text)
    t.equal(printed.listen, '[::1]:5001')
    const original = await loadConfig({ flags: { config: join(root, 'regmirror.example.yaml'), tagTtl: '7m' }, env, cwd: tmp })
    t.same(resolveConfig(printed, { cwd: tmp }), original, 'round trip')
  })
  t.test('problems go to err, one per line, exit code 1', async (t) => {
    const out = new Sink()
    const err = new Sink()
    const code = await configCheck(['--config', join(fixtures, 'many-problems.yaml'), '--max-size', 'lots'], out, err, {
      env: {},
      cwd: tmp,
    })
    t.equal(code, 1)
    t.equal(out.text, '')
    const lines = err.text.trimEnd().split('\n')
    t.equal(lines.length, 10, '9 problems and a summary', { lines })
    t.ok(lines.includes('--max-size: not a size: "lots"'))
    t.ok(lines.includes('upstreams[2].url: must be an http or https URL'))
    t.equal(lines.at(-1), 'configuration invalid: 9 problems')
  })
  t.test('unknown flag and help', async (t) => {
    const out = new Sink()
    const err = new Sink()
    t.equal(await configCheck(['--nope'], out, err, { env: {} }), 1)
    t.match(err.text, '--nope: unknown flag')
    const out2 = new Sink()
    t.equal(await configCheck(['--help'], out2, new Sink(), { env: {} }), 0)
    t.match(out2.text, '--config FILE')
  })
})

t.test('tag TTL rules', async (t) => {
  const u = {
    tagTtl: 300_000,
    tagTtlRules: [
      { pattern: 'latest', ttl: 1 },
      { pattern: 'library/nginx:*', ttl: 2 },
      { pattern: 'semver', ttl: 3 },
      { pattern: '*-rc*', ttl: 4 },
      { pattern: 'team/**:edge', ttl: 5 },
    ],
  }
  t.equal(ttlFor(u, 'library/alpine', 'latest'), 1, 'first match wins')
  t.equal(ttlFor(u, 'library/nginx', 'latest'), 1, 'first match wins over a later repo:tag rule')
  t.equal(ttlFor(u, 'library/nginx', 'mainline'), 2, 'repo:tag glob')
  t.equal(ttlFor(u, 'library/nginx-x', 'mainline'), 300_000, 'repo must match exactly')
  for (const tag of ['1', '1.2', 'v1.2.3', '1.2.3-alpine', '2.0.0-rc.1']) t.equal(ttlFor(u, 'a/b', tag), 3, `semver ${tag}`)
  for (const tag of ['v', '1.2.3.4', 'latest-1.2', 'alpine3.20']) t.not(ttlFor(u, 'a/b', tag), 3, `not semver ${tag}`)
  t.equal(ttlFor(u, 'a/b', 'beta-rc2'), 4, '* glob')
  t.equal(ttlFor(u, 'team/x/y', 'edge'), 5, '** crosses /')
  t.equal(ttlFor(u, 'other/x', 'edge'), 300_000, 'no match: tagTtl')
  t.equal(ttlFor({ tagTtl: 7, tagTtlRules: [{ pattern: 'a.b', ttl: 1 }] }, 'r', 'aXb'), 7, '. is literal')
})

t.test('repository allow/deny', async (t) => {
  const u = { allow: ['myorg/**', 'library/*'], deny: ['myorg/secret-*', '**/internal'] }
  t.ok(repoAllowed(u, 'myorg/app'))
  t.ok(repoAllowed(u, 'myorg/a/b'))
  t.ok(repoAllowed(u, 'library/nginx'))
  t.notOk(repoAllowed(u, 'library/a/b'), '* does not cross /')
  t.notOk(repoAllowed(u, 'other/app'), 'not allowed')
  t.notOk(repoAllowed(u, 'myorg/secret-x'), 'deny wins over allow')
  t.notOk(repoAllowed(u, 'myorg/x/internal'))
  t.ok(repoAllowed({ allow: [], deny: [] }, 'any/thing'), 'empty allow = all')
  t.notOk(repoAllowed({ allow: [], deny: ['x/*'] }, 'x/y'))
})

t.test('secret file permissions error is reported with the path', async (t) => {
  const tmp = t.testdir({ secret: 'x' })
  chmodSync(tmp, 0o755)
  chmodSync(join(tmp, 'secret'), 0o000)
  const config = { upstreams: [{ name: 'ghcr.io', credentials: { username: 'u', passwordFile: join(tmp, 'secret') } }] }
  const want = [`upstreams[0].credentials.passwordFile: cannot read secret file ${join(tmp, 'secret')} (EACCES)`]
  if (process.getuid?.() !== 0)
    t.same(
      problemsOf(() => resolveConfig(config)),
      want,
    )
  else {
    // Root reads everything: load the configuration as an unprivileged user instead, as a
    // service account would (CI runs as root, and this must not go untested there).
    const script = `import { resolveConfig, ConfigError } from ${JSON.stringify(join(root, 'src/config/load.ts'))};
      try { resolveConfig(${JSON.stringify(config)}); console.log('[]') } catch (e) { console.log(JSON.stringify(e instanceof ConfigError ? e.problems : String(e))) }`
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      uid: 65534,
      gid: 65534,
      cwd: root,
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
    })
    t.same(JSON.parse(out), want)
  }
  chmodSync(join(tmp, 'secret'), 0o600)
})

t.test('a URL typed with user:password is never echoed with its password', async (t) => {
  for (const v of [
    'https://bot:hunter2@registry.example',
    'registry=https://bot:hunter2@registry.example',
    'https://bot:hunter2@registry.example/?a=b',
  ]) {
    const fromFlag = await problemsOfAsync(loadConfig({ flags: parseFlags(['--upstream', v]).flags, env: {} }))
    const fromEnv = problemsOf(() => resolveConfig({}, { env: { REGMIRROR_UPSTREAMS: v } }))
    t.equal(fromFlag.length, 1, v)
    t.equal(fromEnv.length, 1, v)
    for (const p of [...fromFlag, ...fromEnv]) t.notMatch(p, 'hunter2', p)
  }
  t.same(
    problemsOf(() => resolveConfig({}, { env: { REGMIRROR_UPSTREAMS: 'https://bot:hunter2@registry.example' } })),
    ['REGMIRROR_UPSTREAMS: must be NAME=URL, got "https://[REDACTED]@registry.example"'],
  )
})

t.test('allowedNetworks: CIDR networks, each checked', async (t) => {
  const c = resolveConfig({ upstreams: [{ name: 'ghcr.io', allowedNetworks: ['10.0.0.0/8', 'fd00::/8', '127.0.0.1'] }] })
  t.same(c.upstreams.find((u) => u.name === 'ghcr.io')!.allowedNetworks, ['10.0.0.0/8', 'fd00::/8', '127.0.0.1'])
  t.same(
    problemsOf(() => resolveConfig({ upstreams: [{ name: 'ghcr.io', allowedNetworks: ['10.0.0.0/33', 'intranet'] }] })),
    [
      'upstreams[0].allowedNetworks[0]: not an IP network (CIDR): "10.0.0.0/33"',
      'upstreams[0].allowedNetworks[1]: not an IP network (CIDR): "intranet"',
    ],
  )
})

t.test('offline: --offline, REGMIRROR_OFFLINE and the file set every upstream offline; an upstream may say otherwise', async (t) => {
  const cwd = t.testdir({})
  t.ok(
    resolveConfig({}, { cwd, flags: parseFlags(['--offline']).flags }).upstreams.every((u) => u.offline),
    '--offline takes no value and applies to every upstream',
  )
  t.ok(resolveConfig({}, { cwd, env: { REGMIRROR_OFFLINE: 'true' } }).upstreams.every((u) => u.offline))
  const mixed = resolveConfig({ offline: { enabled: true }, upstreams: [{ name: 'ghcr.io', offline: false }] }, { cwd })
  t.equal(upstream(mixed, 'ghcr.io')!.offline, false, 'an upstream of its own says otherwise')
  t.equal(upstream(mixed, 'docker.io')!.offline, true)
  t.ok(
    resolveConfig({}, { cwd }).upstreams.every((u) => !u.offline),
    'online by default',
  )
  t.throws(() => parseFlags(['--offline=yes']), 'a switch takes no value')
})

t.test('issue #14 upstream fields: several credentials, limits, negative cache and serveStaleOn', async (t) => {
  const c = resolveConfig(
    {
      negativeTtl: '1m',
      upstreams: [
        {
          name: 'docker.io',
          credentials: [
            { username: 'alice', password: 'a' },
            { username: 'bob', passwordEnv: 'BOB_PASS' },
          ],
          serveStaleOn: [404, 401, 404],
          quotaReserve: 0,
          maxConcurrent: 4,
          maxRequestsPerSecond: 10,
          maxMbps: 2.5,
          maxQueueWait: '5s',
        },
        { name: 'ghcr.io', negativeTtl: 0 },
      ],
    },
    { env: { BOB_PASS: 'b' } },
  )
  const hub = upstream(c, 'docker.io')!
  t.same(hub.credentials, [
    { username: 'alice', password: 'a' },
    { username: 'bob', password: 'b' },
  ])
  t.same(hub.serveStaleOn, [404, 401], 'repeated statuses dropped')
  t.equal(hub.negativeTtl, 60_000, 'inherits the top-level negativeTtl')
  t.equal(upstream(c, 'ghcr.io')!.negativeTtl, 0, 'an upstream of its own says otherwise')
  t.same([hub.quotaReserve, hub.maxConcurrent, hub.maxRequestsPerSecond, hub.maxMbps, hub.maxQueueWait], [0, 4, 10, 2.5, 5000])
  const r = redactConfig(c) as Config
  t.same(upstream(r, 'docker.io')!.credentials, [
    { username: '[REDACTED]', password: '[REDACTED]' },
    { username: '[REDACTED]', password: '[REDACTED]' },
  ])
  const problems = (raw: Record<string, unknown>): string[] => problemsOf(() => resolveConfig(raw))
  t.same(problems({ upstreams: [{ name: 'docker.io', serveStaleOn: [500] }] }), [
    'upstreams[0].serveStaleOn[0]: must be one of 401, 403, 404',
  ])
  t.same(problems({ upstreams: [{ name: 'docker.io', maxMbps: -1 }] }), ['upstreams[0].maxMbps: must be >= 0'])
  t.same(problems({ upstreams: [{ name: 'docker.io', credentials: [{ username: 'a' }, { password: 'p' }] }] }), [
    'upstreams[0].credentials[1].username: a password needs a username',
  ])
})
