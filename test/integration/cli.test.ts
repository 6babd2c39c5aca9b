import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))
const cli = join(root, 'src', 'cli.ts')

/** The real entry point, as an operator runs it (through tsx, so no build is needed). */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', cli, ...args],
      { cwd: root, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    )
  })
}

// Each run starts a Node process that compiles the program: start them all at once.
const dir = await mkdtemp(join(tmpdir(), 'regmirror-cli-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const bad = join(dir, 'bad.yaml')
const ok = join(dir, 'ok.yaml')
await writeFile(
  bad,
  ['upstreams:', '  - name: ghcr.io', '  - name: custom.example', '    url: ftp://custom.example', 'tagTtl: later', 'bogus: 1', ''].join(
    '\n',
  ),
)
await writeFile(
  ok,
  [
    'tagTtl: 1m',
    'log: { level: warn }',
    'upstreams:',
    '  - name: ghcr.io',
    '    credentials: { username: bot, passwordEnv: GHCR_PASSWORD }',
    '',
  ].join('\n'),
)
const [serveBad, check] = await Promise.all([
  run(['serve', '--config', bad, '--listen', '127.0.0.1:0', '--data', join(dir, 'data')]),
  run(['config', 'check', '--config', ok, '--tag-ttl', '9m'], {
    GHCR_PASSWORD: 'cli-s3cret',
    REGMIRROR_TAG_TTL: '7m',
    REGMIRROR_LOG_LEVEL: 'debug',
  }),
])

t.test('serve with an invalid file: every problem on stderr with its path, non-zero exit, nothing served', async (t) => {
  t.equal(serveBad.code, 2)
  t.match(serveBad.stderr, /upstreams\[1\]\.url: must be an http or https URL/)
  t.match(serveBad.stderr, /tagTtl: not a duration/)
  t.match(serveBad.stderr, /bogus: unknown key/)
  t.notMatch(serveBad.stdout, /listening/)
})

t.test('config check through the real binary: env overrides the file, flags override env, secrets redacted', async (t) => {
  t.equal(check.code, 0, check.stderr)
  t.match(check.stdout, /level: debug/, 'the environment wins over the file')
  t.match(check.stdout, /tagTtl: 9m/, 'a flag wins over the environment and the file')
  t.match(check.stdout, /\[REDACTED\]/)
  t.notMatch(check.stdout + check.stderr, 'cli-s3cret')
})
