import { spawn } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { MANIFEST_ACCEPT as ACCEPT } from '../../src/oci/media-types.js'
import { runCli } from '../helpers/cli.js'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'

/** The tools as an operator runs them (issue #12): progress on a terminal and off it, and a kill -9 in the middle. */

async function tempDir(t: Test, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regmirror-cli-${name}-`))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const flags = (fake: FakeRegistry, data: string) => ['--data', data, '--upstream', `docker.io=${fake.url}`]
const ESC = '\x1b['

/** Runs the CLI under a pseudo-terminal (util-linux `script`), as an operator's shell would; the terminal's output. */
function onTerminal(args: string[]): Promise<{ code: number; screen: string }> {
  const command = [process.execPath, '--import', 'tsx', 'src/cli.ts', ...args].map((a) => `'${a}'`).join(' ')
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { env: { ...process.env, REGMIRROR_CONFIG: '', COLUMNS: '160' } })
    let screen = ''
    child.stdout.on('data', (c: Buffer) => (screen += c.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, screen }))
  })
}

t.test('progress: bars on a terminal, plain lines without one, the same summary', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  fake.addImage('library/big', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [6_000_000, 6_000_000] })
  fake.addImage('library/small', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [100_000] })

  const tty = await onTerminal(['preload', ...flags(fake, await tempDir(t, 'tty')), 'big:1', 'small:1'])
  t.equal(tty.code, 0, tty.screen)
  t.ok(tty.screen.includes(ESC), 'the terminal gets cursor control')
  t.match(
    tty.screen,
    /total +=*-* [\d.]+ (KiB|MiB)\/[\d.]+ MiB [\d.]+ (B|KiB|MiB)\/s ETA \S+ blobs \d+\/\d+/,
    'a total bar with bytes, rate, ETA, blobs',
  )
  t.match(tty.screen, /docker\.io\/library\/big:1 +[=-]+ /, 'a bar per image in flight')
  t.match(tty.screen, /image docker\.io\/library\/big:1 done: 3 blobs, 11\.\d MiB/, 'a line when an image is done')
  t.match(tty.screen, /preload: 2 images \(2 done, 0 failed\), 5 blobs/)
  t.notMatch(tty.screen, /blob sha256:[a-f0-9]{64} .* fetched/, 'no line per blob on a terminal')

  const plain = await runCli(['preload', ...flags(fake, await tempDir(t, 'plain')), 'big:1', 'small:1'])
  t.equal(plain.code, 0)
  t.notOk(plain.stderr.includes(ESC) || plain.stdout.includes(ESC), 'no escape sequences in a pipe')
  t.equal(
    plain.stderr.match(/^blob sha256:[a-f0-9]{64} [\d.]+ (B|KiB|MiB) fetched \(docker\.io\/library\/(big|small):1\)$/gm)?.length,
    5,
    'one line per blob: the config and the layers',
  )
  t.match(plain.stderr, /^image docker\.io\/library\/small:1 done: 2 blobs/m)
  t.match(plain.stdout, /preload: 2 images \(2 done, 0 failed\), 5 blobs/)

  const failed = await runCli([
    'preload',
    ...flags(fake, await tempDir(t, 'fail')),
    '--progress',
    'none',
    'big:1',
    'nosuch:9',
    'ghcr.io/x/y:1',
  ])
  t.equal(failed.code, 1, 'exit 1 when an image failed')
  t.match(failed.stdout, /FAILED {2}docker\.io\/library\/nosuch:9: /, 'each failed image named with its reason')
  t.match(failed.stdout, /FAILED {2}ghcr\.io\/x\/y:1: /)
  t.match(failed.stdout, /ok {6}docker\.io\/library\/big:1/, 'the others are fetched')
  const bad = await runCli(['preload', ...flags(fake, await tempDir(t, 'bad')), 'Not A Ref'])
  t.equal(bad.code, 2, 'a malformed reference is a usage error')
  t.match(bad.stderr, /argument: .*invalid/)
})

t.test('kill -9 during an import: the cache verifies clean, and the import run again completes', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const one = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [15_000_000, 15_000_000, 15_000_000] }
  const imgs = ['k1', 'k2', 'k3'].map((n) => fake.addImage(`library/${n}`, '1', one))
  const src = await tempDir(t, 'kill-src')
  t.equal((await runCli(['preload', ...flags(fake, src), '--progress', 'none', 'k1:1', 'k2:1', 'k3:1'])).code, 0)
  const archive = join(src, 'k.tar')
  t.equal((await runCli(['export', ...flags(fake, src), '--progress', 'none', '-o', archive, 'k1:1', 'k2:1', 'k3:1'])).code, 0)

  const dst = await tempDir(t, 'kill-dst')
  const args = ['--import', 'tsx', 'src/cli.ts', 'import', '--data', dst, '--progress', 'plain', archive]
  const child = spawn(process.execPath, args, { env: { ...process.env, REGMIRROR_CONFIG: '' } })
  let seen = ''
  const killed = await new Promise<boolean>((resolve) => {
    child.stderr.on('data', (c: Buffer) => {
      seen += c.toString()
      // After the third blob: some content is in, no image is complete yet.
      if ((seen.match(/ imported \(/g) ?? []).length >= 3) child.kill('SIGKILL')
    })
    child.on('close', (_code, signal) => resolve(signal === 'SIGKILL'))
  })
  t.ok(killed, 'the import was killed part way')
  const verify = await runCli(['verify', '--data', dst])
  t.equal(verify.code, 0, `verify finds nothing wrong: ${verify.stdout}`)
  t.notMatch(verify.stdout, /corrupt|orphaned|stray/)
  const tags = await readdir(join(dst, 'repositories', 'docker.io', 'library')).catch(() => [] as string[])
  for (const name of tags) {
    const m = await startMirror(
      t,
      { offline: { enabled: true }, upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }] },
      { dataDir: dst },
    )
    const r = await get(`${m.url}/v2/${name}/manifests/1`, { accept: ACCEPT })
    t.equal(r.status, 200, `a tag the killed import wrote (${name}) has its content`)
    await m.close()
  }

  const again = await runCli(['import', '--data', dst, '--progress', 'none', archive])
  t.equal(again.code, 0, again.stdout + again.stderr)
  t.match(again.stdout, /3 images imported, 0 failed; \d+ blobs stored .*, [1-9]\d* already cached/, 'what was in is not written again')
  const mirror = await startMirror(
    t,
    { offline: { enabled: true }, upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }] },
    { dataDir: dst },
  )
  for (const img of imgs) {
    const layer = img.manifests[0]!.layers[2]!
    t.equal(sha256((await get(`${mirror.url}/v2/${img.repo.slice(8)}/blobs/${layer.digest}`)).body), layer.digest)
  }
  t.equal((await runCli(['verify', '--data', dst])).code, 0)
})
