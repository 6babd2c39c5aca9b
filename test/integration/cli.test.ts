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

t.test('serve with an invalid file: every problem on stderr with its path, non-zero exit, nothing served', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'regmirror-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'bad.yaml')
  await writeFile(file, ['upstreams:', '  - name: ghcr.io', '  - name: custom.example', '    url: ftp://custom.example', 'tagTtl: later', 'bogus: 1', ''].join('\n'))
  const r = await run(['serve', '--config', file, '--listen', '127.0.0.1:0', '--data', join(dir, 'data')])
  t.equal(r.code, 2)
  t.match(r.stderr, /upstreams\[1\]\.url: must be an http or https URL/)
  t.match(r.stderr, /tagTtl: /)
  t.match(r.stderr, /bogus: unknown key/)
  t.notMatch(r.stdout, /listening/)
})

t.test('config check through the real binary: env overrides the file, secrets redacted', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'regmirror-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'ok.yaml')
  await writeFile(file, ['tagTtl: 1m', 'upstreams:', '  - name: ghcr.io', '    credentials: { username: bot, passwordEnv: GHCR_PASSWORD }', ''].join('\n'))
  const r = await run(['config', 'check', '--config', file], { GHCR_PASSWORD: 'cli-s3cret', REGMIRROR_TAG_TTL: '7m' })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /tagTtl: 7m/, 'the environment wins over the file')
  t.match(r.stdout, /\[REDACTED\]/)
  t.notMatch(r.stdout + r.stderr, 'cli-s3cret')
  const flagged = await run(['config', 'check', '--config', file, '--tag-ttl', '9m'], { GHCR_PASSWORD: 'x', REGMIRROR_TAG_TTL: '7m' })
  t.match(flagged.stdout, /tagTtl: 9m/, 'a flag wins over the environment')
})
