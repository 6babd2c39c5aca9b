import { randomBytes } from 'node:crypto'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { fetchBody, tempDir } from '../helpers/crash-tools.js'

/** The `worker` of each log line about a request for `path`. */
function workersServing(logs: string[], path: string): Set<number> {
  const seen = new Set<number>()
  for (const line of logs) {
    if (!line.includes(path)) continue
    const rec = JSON.parse(line) as { worker?: number }
    if (typeof rec.worker === 'number' && rec.worker > 0) seen.add(rec.worker)
  }
  return seen
}

t.test('concurrent cold clients of one blob on several workers: one upstream download, every body verified', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const blob = randomBytes(4 * 1024 * 1024)
  const digest = fake.addBlob(blob)
  // Slow enough that every client asks while the download is in progress.
  fake.fault({ kind: 'slow', bytesPerSecond: 2_000_000, match: { server: 'cdn' } })
  const data = await tempDir(t)
  const m = await startMirrorProcess(['--data', data, '--upstream', `docker.io=${fake.url}`, '--workers', '2'])
  t.teardown(() => m.program.stop())
  const path = `/v2/library/shared/blobs/${digest}`
  const results = await Promise.all(Array.from({ length: 8 }, () => fetchBody(`${m.url}${path}`)))
  for (const r of results) {
    if (r instanceof Error) throw r
    t.equal(r.status, 200)
    t.equal(sha256(r.body), digest, 'verified bytes')
  }
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1, 'one upstream download for all clients')
  t.same([...workersServing(m.logs(), path)].sort(), [1, 2], 'the clients were served by both workers')
})
