import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'

const MiB = 1024 * 1024

t.test('a 20 MiB blob arrives verified through an upstream that breaks every response after 1 MiB', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const bytes = randomBytes(20 * MiB)
  const digest = fake.addBlob(bytes)
  fake.fault({ kind: 'drop', afterBytes: MiB, match: { server: 'cdn' } })
  // Default resumeAttempts (5) is far below the ~19 resumes needed: attempts count only when no progress is made.
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const url = `${mirror.url}/v2/library/big/blobs/${digest}`
  // Two clients on the same fill: both keep reading across every resume.
  const [a, b] = await Promise.all([get(url), get(url)])
  for (const r of [a, b]) {
    t.equal(r.status, 200)
    t.equal(r.body.length, bytes.length)
    t.equal(sha256(r.body), digest, 'verified bytes')
  }
  const ranged = fake.requests.filter((r) => r.server === 'cdn' && r.headers.range !== undefined)
  t.ok(ranged.length >= 19, `the fake saw ${ranged.length} Range requests`)
  const offsets = ranged.map((r) => Number(/^bytes=(\d+)-$/.exec(String(r.headers.range))?.[1]))
  t.same(
    offsets,
    [...offsets].sort((x, y) => x - y),
    'each resume continues from further on',
  )
  t.ok(
    offsets.every((o) => o > 0 && o < bytes.length),
    'resumes start where the download stopped',
  )
  t.equal(fake.requests.filter((r) => r.server === 'cdn' && r.headers.range === undefined).length, 1, 'one download from byte 0')
  fake.reset()
  const hit = await get(url)
  t.equal(hit.headers.get('x-regmirror-cache'), 'hit', 'the resumed blob was cached')
  t.equal(sha256(hit.body), digest)
  t.equal(fake.count({ server: 'cdn' }), 0)
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_fill_resumes_total \d+/)
  t.ok(
    mirror.logs.some((l) => l.includes('resuming with Range') && l.includes(digest)),
    'each resume is logged with the digest',
  )
})

t.test('an upstream that makes no progress fails the fill after resumeAttempts; nothing is cached', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const bytes = randomBytes(2 * MiB)
  const digest = fake.addBlob(bytes)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], retries: { resumeAttempts: 3 } })
  const url = `${mirror.url}/v2/library/stuck/blobs/${digest}`
  // The first response gets 1 MiB through, every later one nothing.
  fake.fault({ kind: 'drop', afterBytes: MiB, match: { server: 'cdn' }, times: 1 })
  fake.fault({ kind: 'drop', afterBytes: 0, match: { server: 'cdn' } })
  await t.rejects(get(url), 'the client sees a broken response, never a short complete one')
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1 + 3, 'one download and three resumes without progress')
  t.same(await readdir(join(mirror.dataDir, 'tmp')), [], 'no temp file left')
  fake.clearFaults()
  fake.reset()
  const ok = await get(url)
  t.equal(ok.status, 200)
  t.equal(sha256(ok.body), digest)
  t.equal(ok.headers.get('x-regmirror-cache'), 'miss', 'the failed download was not cached')
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1)
})
