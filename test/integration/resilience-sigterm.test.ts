import { randomBytes } from 'node:crypto'
import { readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { fetchBody, files, tempDir, until } from '../helpers/crash-tools.js'

t.test('SIGTERM: in-flight responses finish, new connections are refused, exit 0', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const blob = randomBytes(600_000)
  const digest = fake.addBlob(blob)
  fake.fault({ kind: 'slow', bytesPerSecond: 400_000, match: { server: 'cdn' } })
  const data = await tempDir(t)
  const config = join(data, '..', `${data.split('/').pop()}.yaml`)
  await writeFile(config, 'timeouts:\n  shutdown: 20s\n')
  t.teardown(() => rm(config, { force: true }))
  const m = await startMirrorProcess(['--config', config, '--data', data, '--upstream', `docker.io=${fake.url}`])
  const res = await fetch(`${m.url}/v2/library/term/blobs/${digest}`)
  t.equal(res.status, 200, 'headers arrived')
  // A keep-alive connection that is busy at the signal and idle a moment later.
  t.equal((await fetch(`${m.url}/v2/`)).status, 200)
  process.kill(m.program.pid, 'SIGTERM')
  await until('the listener to close', async () => (await fetchBody(`${m.url}/v2/`)) instanceof Error)
  t.pass('new connections are refused while the response is still in flight')
  const body = Buffer.from(await res.arrayBuffer())
  t.equal(sha256(body), digest, 'the in-flight response finished with every byte')
  const exit = await m.program.exit
  t.equal(exit.code, 0, 'exit code 0')
  t.same(await readdir(join(data, 'tmp')), [])
  t.ok(m.logs().some((l) => l.includes('shutting down')))
  t.notOk(
    m.logs().some((l) => l.includes('shutdown deadline passed')),
    'no connection held the server open until the deadline',
  )
})

t.test('SIGTERM: a fill that cannot finish by the deadline leaves nothing behind', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const blob = randomBytes(10 * 1024 * 1024)
  const digest = fake.addBlob(blob)
  fake.fault({ kind: 'slow', bytesPerSecond: 100_000, match: { server: 'cdn' } })
  const data = await tempDir(t)
  const config = join(data, '..', `${data.split('/').pop()}.yaml`)
  await writeFile(config, 'timeouts:\n  shutdown: 500ms\n')
  t.teardown(() => rm(config, { force: true }))
  const m = await startMirrorProcess(['--config', config, '--data', data, '--upstream', `docker.io=${fake.url}`])
  const pending = fetchBody(`${m.url}/v2/library/term/blobs/${digest}`)
  await until('the download to start', async () => (await readdir(join(data, 'tmp'))).length > 0)
  process.kill(m.program.pid, 'SIGTERM')
  const exit = await m.program.exit
  t.equal(exit.code, 0, 'exit code 0 after the deadline')
  t.ok((await pending) instanceof Error, 'the unfinished response was broken off, never completed short')
  t.same(await readdir(join(data, 'tmp')), [], 'no temp file left')
  t.same(await files(join(data, 'blobs', 'sha256')), [], 'nothing in the content store')
})
