import { randomBytes } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { fetchBody, files, tempDir, until } from '../helpers/crash-tools.js'

t.test('kill -9 in the middle of many fills: after a restart tmp/ is clean, nothing partial is served, pulls succeed', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  // A fill writes its temp file a MiB at a time (fill/spool.ts): 3 MiB blobs have bytes on disk well before they end.
  const blobs = Array.from({ length: 8 }, () => randomBytes(3 * 1024 * 1024))
  const digests = blobs.map((b) => fake.addBlob(b))
  fake.fault({ kind: 'slow', bytesPerSecond: 400_000, match: { server: 'cdn' } })
  const data = await tempDir(t)
  const m1 = await startMirrorProcess(['--data', data, '--upstream', `docker.io=${fake.url}`])
  const inflight = digests.map((d) => fetchBody(`${m1.url}/v2/library/crash/blobs/${d}`))
  await until('partial downloads in tmp/', async () => {
    const names = await readdir(join(data, 'tmp'))
    if (names.length < digests.length) return false
    const sizes = await Promise.all(names.map((n) => stat(join(data, 'tmp', n)).then((s) => s.size)))
    return sizes.every((s) => s > 0)
  })
  process.kill(m1.program.pid, 'SIGKILL')
  await m1.program.exit
  for (const r of await Promise.all(inflight)) t.ok(r instanceof Error, 'the interrupted responses were broken off, not completed')
  t.equal((await readdir(join(data, 'tmp'))).length, digests.length, 'the crash left partial downloads behind')
  t.same(await files(join(data, 'blobs', 'sha256')), [], 'and nothing partial in the content store')

  fake.clearFaults()
  fake.reset()
  const m2 = await startMirrorProcess(['--data', data, '--upstream', `docker.io=${fake.url}`])
  t.teardown(() => m2.program.stop())
  t.same(await readdir(join(data, 'tmp')), [], 'temp files are removed on start-up')
  for (const [i, d] of digests.entries()) {
    const r = await fetchBody(`${m2.url}/v2/library/crash/blobs/${d}`)
    if (r instanceof Error) throw r
    t.equal(r.status, 200)
    t.equal(sha256(r.body), d, 'verified bytes')
    t.equal(r.body.length, blobs[i]!.length)
  }
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), digests.length, 'every blob downloaded anew')
})
