import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { startGatedUpstream } from '../helpers/gated-upstream.js'
import { get, pausedGet, startMirror, type TestMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_OCI_MANIFESTS } from '../helpers/oci-http.js'

async function metric(m: TestMirror, name: string): Promise<string> {
  const text = (await get(`${m.url}/metrics`)).body.toString()
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n')
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await cond()) return
    await sleep(5)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Files under dataDir/<sub>, recursively (names only). */
async function files(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) if (e.isFile()) out.push(e.name)
  return out
}

/** Manifest GETs the upstream answered (the first request's 401 token challenge is not a second fetch). */
function manifestGets(fake: FakeRegistry): number {
  return fake.requests.filter((r) => r.server === 'registry' && r.method === 'GET' && r.path.includes('/manifests/') && r.status !== 401)
    .length
}

async function joinedCount(m: TestMirror): Promise<number> {
  return (await m.app.services.metrics.fillReadersJoined.get()).values[0]?.value ?? 0
}

t.test('50 concurrent clients of one cold blob: one upstream download, every body verified', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const bytes = randomBytes(1024 * 1024)
  const digest = fake.addBlob(bytes)
  fake.fault({ kind: 'slow', bytesPerSecond: 2 * 1024 * 1024, match: { server: 'cdn' } })
  const url = `${mirror.url}/v2/library/big/blobs/${digest}`

  const full = Array.from({ length: 48 }, () => get(url))
  const ranged = [get(url, { range: 'bytes=1000-1999' }), get(url, { range: 'bytes=-4096' })]
  const results = await Promise.all([...full, ...ranged])
  for (const [i, r] of results.slice(0, 48).entries()) {
    t.equal(r.status, 200, `client ${i}`)
    t.equal(sha256(r.body), digest, `client ${i} body verifies`)
  }
  t.equal(results[48]!.status, 206)
  t.same(results[48]!.body, bytes.subarray(1000, 2000), 'a Range client joining at the start gets its bytes')
  t.same(results[49]!.body, bytes.subarray(bytes.length - 4096), 'a suffix Range client gets its bytes')
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1, 'the upstream served the blob exactly once')

  const after = await get(url)
  t.equal(sha256(after.body), digest, 'a client after the commit reads the committed file')
  t.equal(after.headers.get('x-regmirror-cache'), 'hit')
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1)
  t.match(await metric(mirror, 'regmirror_fills_started_total'), /regmirror_fills_started_total 1$/)
  // How many joined the fill rather than hitting the committed file depends on scheduling;
  // that there was one download is what matters, asserted above.
  const joined = await joinedCount(mirror)
  t.ok(joined >= 1 && joined <= 49, `clients joined the fill in progress (${joined})`)
  t.match(await metric(mirror, 'regmirror_fill_joined_bytes_total'), /regmirror_fill_joined_bytes_total [1-9]\d*$/)
})

t.test('clients joining in the middle of a fill, whole and with a Range, read from the temp file and follow it', async (t) => {
  const bytes = randomBytes(600_000)
  const up = await startGatedUpstream(bytes)
  t.teardown(() => up.stop())
  const mirror = await startMirror(t, { upstreams: [{ name: 'up.example', url: up.url }], defaultUpstream: 'up.example' })
  const url = `${mirror.url}/v2/app/blobs/${sha256(bytes)}`
  const first = get(url)
  await up.waiting()
  // The fill has the first half on disk and waits for the rest.
  await waitFor(() => mirror.app.services.blobs.activeFills()[0]?.written === up.half, 'the first half on disk')
  const mid = get(url)
  const early = get(url, { range: 'bytes=10-99' }) // wholly inside what is already written
  const late = get(url, { range: `bytes=${up.half - 5}-${up.half + 99}` }) // straddles the gate
  await waitFor(async () => (await joinedCount(mirror)) === 3, 'three joined readers')
  t.match(
    await metric(mirror, 'regmirror_fills_in_progress'),
    /regmirror_fills_in_progress 1$/,
    'one fill in progress, however many read it',
  )
  up.open()
  const [a, b, c, d] = await Promise.all([first, mid, early, late])
  t.equal(sha256(a.body), sha256(bytes))
  t.equal(sha256(b.body), sha256(bytes), 'the mid-fill joiner gets the whole blob')
  t.equal(c.status, 206)
  t.same(c.body, bytes.subarray(10, 100))
  t.equal(d.status, 206)
  t.same(d.body, bytes.subarray(up.half - 5, up.half + 100), 'a Range across the written edge follows the file')
  t.equal(up.blobGets, 1)
  await waitFor(() => mirror.app.services.blobs.activeFills().length === 0, 'the fill is over')
  t.match(await metric(mirror, 'regmirror_fills_in_progress'), /regmirror_fills_in_progress 0$/, 'none once it is over')
})

t.test('a reader that stops reading does not hold up the fill or the other readers', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  // Much more than the socket buffers can absorb, so the paused client really holds data back.
  const bytes = randomBytes(16 * 1024 * 1024)
  const digest = fake.addBlob(bytes)
  const path = `/v2/library/paused/blobs/${digest}`
  const url = `${mirror.url}${path}`
  const finished = () => mirror.logs.filter((l) => l.includes('"msg":"request"') && l.includes(path)).length
  const paused = await pausedGet(url)
  const others = await Promise.all(Array.from({ length: 4 }, () => get(url)))
  for (const r of others) t.equal(sha256(r.body), digest, 'the other readers finish with verified bodies')
  t.equal(mirror.app.services.index.sizeOf(digest), bytes.length, 'the fill committed while a reader was paused')
  t.equal(finished(), 4, 'the paused response is still being sent while the others are done')
  t.equal(sha256(await paused.body()), digest, 'the paused reader, resumed, still gets the right bytes')
  await waitFor(() => finished() === 5, 'the paused response to finish')
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1)
})

t.test('a client that disconnects mid-fill releases only itself', async (t) => {
  const bytes = randomBytes(400_000)
  const up = await startGatedUpstream(bytes)
  t.teardown(() => up.stop())
  const mirror = await startMirror(t, { upstreams: [{ name: 'up.example', url: up.url }], defaultUpstream: 'up.example' })
  const url = `${mirror.url}/v2/app/blobs/${sha256(bytes)}`
  const quitter = await pausedGet(url)
  await up.waiting()
  const stayer = get(url)
  await waitFor(async () => (await joinedCount(mirror)) === 1, 'the second reader joined')
  quitter.res.destroy()
  await sleep(20)
  up.open()
  const r = await stayer
  t.equal(sha256(r.body), sha256(bytes), 'the remaining reader completes')
  await waitFor(() => mirror.app.services.index.has(sha256(bytes)), 'the blob is cached')
  t.equal(up.blobGets, 1, 'the disconnect did not cancel or restart the download')
})

t.test('a fill with wrong bytes breaks off every reader, caches nothing, and the next request succeeds', async (t) => {
  const bytes = randomBytes(500_000)
  const up = await startGatedUpstream(bytes)
  t.teardown(() => up.stop())
  const mirror = await startMirror(t, { upstreams: [{ name: 'up.example', url: up.url }], defaultUpstream: 'up.example' })
  const url = `${mirror.url}/v2/app/blobs/${sha256(bytes)}`
  up.corrupt = true
  const readers = [get(url), get(url), get(url, { range: 'bytes=0-' }), get(url, { range: 'bytes=100-199' })]
  await up.waiting()
  await waitFor(async () => (await joinedCount(mirror)) === 3, 'every reader joined the fill')
  up.open()
  const settled = await Promise.allSettled(readers)
  // Each reader holds back the last byte of its range until the digest is verified, so even
  // the small Range that lies wholly in the first half is broken off rather than completed.
  for (const [i, s] of settled.entries()) t.equal(s.status, 'rejected', `reader ${i} saw a broken response, never a complete body`)
  await waitFor(() => mirror.app.services.blobs.activeFills().length === 0, 'the fill is over')
  t.same(await files(join(mirror.dataDir, 'blobs')), [], 'nothing was cached')
  t.same(await files(join(mirror.dataDir, 'tmp')), [], 'the temp file is gone')
  t.match(await metric(mirror, 'regmirror_fills_failed_total'), /cause="digest_mismatch"\} 1/)

  up.corrupt = false
  const ok = await get(url)
  t.equal(ok.status, 200, 'the next request starts a new fill')
  t.equal(sha256(ok.body), sha256(bytes))
  t.equal(up.blobGets, 2)
})

t.test('100 concurrent requests for an uncached tag make one upstream manifest request', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const img = fake.addImage('library/hot', 'latest', { platforms: [{ os: 'linux', architecture: 'amd64' }] })
  fake.fault({ kind: 'delayHeaders', ms: 100, match: { server: 'registry', path: /manifests/ } })
  const rs = await Promise.all(
    Array.from({ length: 100 }, () => get(`${mirror.url}/v2/hot/manifests/latest`, { accept: ACCEPT_OCI_MANIFESTS })),
  )
  for (const r of rs) t.equal(r.headers.get('docker-content-digest'), img.digest)
  t.ok(
    rs.every((r) => r.status === 200 && sha256(r.body) === img.digest),
    'all 100 bodies verify',
  )
  t.equal(manifestGets(fake), 1, 'one upstream manifest GET')

  const byDigest = await Promise.all(Array.from({ length: 100 }, () => get(`${mirror.url}/v2/hot/blobs/${img.blobs[0]!.digest}`)))
  t.ok(byDigest.every((r) => sha256(r.body) === img.blobs[0]!.digest))
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1, 'one upstream blob GET')
})

t.test('concurrent requests for an uncached manifest digest make one upstream request', async (t: Test) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const img = fake.addImage('library/hotd', '1')
  fake.fault({ kind: 'delayHeaders', ms: 100, match: { server: 'registry', path: /manifests/ } })
  const rs = await Promise.all(
    Array.from({ length: 100 }, () => get(`${mirror.url}/v2/hotd/manifests/${img.digest}`, { accept: ACCEPT_OCI_MANIFESTS })),
  )
  t.ok(rs.every((r) => r.status === 200 && sha256(r.body) === img.digest))
  t.equal(manifestGets(fake), 1)
})
