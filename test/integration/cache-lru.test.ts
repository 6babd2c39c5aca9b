import { randomBytes } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { sha256, startFakeRegistry, type FakeRegistry } from '../helpers/fake-registry/index.js'
import { get, pausedGet, startMirror, type TestMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_OCI_MANIFESTS } from '../helpers/oci-http.js'

const KB = 1000

async function fakeUpstream(t: Test): Promise<FakeRegistry> {
  const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
  t.teardown(() => fake.close())
  return fake
}

function mirrorConfig(fake: FakeRegistry, cache: Record<string, unknown>): Record<string, unknown> {
  return { upstreams: [{ name: 'docker.io', url: fake.url }], cache: { touchInterval: 0, ...cache } }
}

/** digest → size of every committed file in the mirror's content store. */
async function onDisk(m: TestMirror): Promise<Map<string, number>> {
  const dir = join(m.dataDir, 'blobs', 'sha256')
  const out = new Map<string, number>()
  for (const p of await readdir(dir)) {
    for (const n of await readdir(join(dir, p))) out.set(`sha256:${n}`, (await stat(join(dir, p, n))).size)
  }
  return out
}

const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0)

async function pullBlob(t: Test, m: TestMirror, digest: string, what: string): Promise<void> {
  const r = await get(`${m.url}/v2/library/x/blobs/${digest}`)
  t.equal(r.status, 200, what)
  t.equal(sha256(r.body), digest, `${what}: body verifies`)
}

// mtimes carry recency across restarts; keep accesses apart so their order is unambiguous.
const tick = () => sleep(15)

async function counter(m: TestMirror, name: 'evictions' | 'evictedBytes'): Promise<number> {
  return (await m.app.services.metrics[name].get()).values[0]?.value ?? 0
}

t.test('the disk stays under maxSize, least recently used goes first, and a restart keeps the order', async (t) => {
  const fake = await fakeUpstream(t)
  const [a, b, c, d, e] = Array.from({ length: 5 }, () => {
    const bytes = randomBytes(300 * KB)
    return fake.addBlob(bytes)
  }) as [string, string, string, string, string]
  const m1 = await startMirror(t, mirrorConfig(fake, { maxSize: 1000 * KB }))
  for (const [digest, name] of [
    [a, 'a'],
    [b, 'b'],
    [c, 'c'],
  ] as const) {
    await pullBlob(t, m1, digest, name)
    await tick()
  }
  await pullBlob(t, m1, a, 'a again (a hit makes it the most recent)')
  t.equal(fake.count({ method: 'GET', path: `/v2/library/x/blobs/${a}` }), 1, 'the second pull of a was a hit')
  await tick()
  await pullBlob(t, m1, d, 'd')
  let disk = await onDisk(m1)
  t.same([...disk.keys()].sort(), [a, c, d].sort(), 'b, the least recently used, was evicted')
  t.ok(total(disk) <= 1000 * KB, `disk ${total(disk)} <= maxSize`)
  t.equal(await counter(m1, 'evictions'), 1)
  t.equal(await counter(m1, 'evictedBytes'), 300 * KB)
  t.same(m1.app.services.index.order(), [c, a, d])
  await m1.close()

  const m2 = await startMirror(t, mirrorConfig(fake, { maxSize: 1000 * KB }), { dataDir: m1.dataDir })
  t.same(m2.app.services.index.order(), [c, a, d], 'the recency order survived the restart')
  await pullBlob(t, m2, e, 'e')
  disk = await onDisk(m2)
  t.same([...disk.keys()].sort(), [a, d, e].sort(), 'after the restart c, the least recent, goes first')
  t.ok(total(disk) <= 1000 * KB)
  const metrics = (await get(`${m2.url}/metrics`)).body.toString()
  t.match(metrics, new RegExp(`regmirror_cache_size_bytes ${total(disk)}\\b`))
  t.match(metrics, /regmirror_cache_entries 3\b/)
})

t.test('a shrunk maxSize is enforced at start-up, oldest first', async (t) => {
  const fake = await fakeUpstream(t)
  const ds = Array.from({ length: 4 }, () => fake.addBlob(randomBytes(200 * KB)))
  const m1 = await startMirror(t, mirrorConfig(fake, { maxSize: 1000 * KB }))
  for (const d of ds) {
    await pullBlob(t, m1, d, 'fill')
    await tick()
  }
  await m1.close()
  const m2 = await startMirror(t, mirrorConfig(fake, { maxSize: 500 * KB }), { dataDir: m1.dataDir })
  const disk = await onDisk(m2)
  t.same([...disk.keys()].sort(), ds.slice(2).sort(), 'the two most recent are kept')
})

t.test('a blob being read is not evicted; a blob that cannot get room is served but not kept', async (t) => {
  const fake = await fakeUpstream(t)
  const big = randomBytes(16 * 1024 * 1024)
  const a = fake.addBlob(big)
  const b = fake.addBlob(randomBytes(10 * 1024 * 1024))
  const m = await startMirror(t, mirrorConfig(fake, { maxSize: 20 * 1024 * 1024 }))
  await pullBlob(t, m, a, 'a cached')
  const path = `/v2/library/x/blobs/${a}`
  const reader = await pausedGet(`${m.url}${path}`)
  await pullBlob(t, m, b, 'b while a is being read')
  let disk = await onDisk(m)
  t.ok(disk.has(a), 'a, being read, was not evicted')
  t.notOk(disk.has(b), 'b was streamed through: keeping it would have meant going over maxSize')
  t.ok(total(disk) <= 20 * 1024 * 1024)
  t.equal(m.logs.filter((l) => l.includes('"msg":"request"') && l.includes(path)).length, 1, 'the read of a is still in progress')
  t.equal(sha256(await reader.body()), a, 'the reader of a gets every byte')
  await sleep(20)
  await pullBlob(t, m, b, 'b once a is no longer read')
  disk = await onDisk(m)
  t.same([...disk.keys()], [b], 'now a could be evicted to make room for b')
  t.equal(fake.count({ method: 'GET', path: `/v2/library/x/blobs/${b}` }), 2)
})

t.test('a blob larger than the whole cache is served and not kept', async (t) => {
  const fake = await fakeUpstream(t)
  const small = fake.addBlob(randomBytes(100 * KB))
  const huge = fake.addBlob(randomBytes(1500 * KB))
  const m = await startMirror(t, mirrorConfig(fake, { maxSize: 1000 * KB }))
  await pullBlob(t, m, small, 'small')
  await pullBlob(t, m, huge, 'huge, first')
  await pullBlob(t, m, huge, 'huge, second')
  t.equal(fake.count({ method: 'GET', path: `/v2/library/x/blobs/${huge}` }), 2, 'not kept, so fetched again')
  t.same([...(await onDisk(m)).keys()], [small], 'nothing was evicted for it')
  t.equal(await counter(m, 'evictions'), 0)
})

t.test('pinned images are never evicted, also after a restart with a smaller cache', async (t) => {
  const fake = await fakeUpstream(t)
  const img = fake.addImage('library/pinned', '1', { layerSizes: [100 * KB, 100 * KB] }) // two platforms: index + 2 manifests
  const others = Array.from({ length: 4 }, () => fake.addBlob(randomBytes(250 * KB)))
  const cfg = (maxSize: number) => mirrorConfig(fake, { maxSize, pins: ['docker.io/library/pinned:1'] })
  const m1 = await startMirror(t, cfg(1200 * KB))
  const idx = await get(`${m1.url}/v2/pinned/manifests/1`, { accept: ACCEPT_OCI_MANIFESTS })
  t.equal(idx.status, 200)
  for (const man of img.manifests) {
    t.equal((await get(`${m1.url}/v2/pinned/manifests/${man.digest}`, { accept: ACCEPT_OCI_MANIFESTS })).status, 200)
    for (const blob of [man.config, ...man.layers]) await pullBlob(t, m1, blob.digest, 'pinned blob')
  }
  const pinned = [img.digest, ...img.manifests.map((x) => x.digest), ...img.blobs.map((x) => x.digest)]
  for (const d of pinned) t.ok(m1.app.services.index.isPinned(d), `${d.slice(0, 15)} is pinned`)
  await tick()
  for (const d of others) {
    await pullBlob(t, m1, d, 'unpinned')
    await tick()
  }
  let disk = await onDisk(m1)
  for (const d of pinned) t.ok(disk.has(d), 'pinned content is still on disk')
  t.ok(total(disk) <= 1200 * KB, `disk ${total(disk)} <= maxSize`)
  t.ok((await counter(m1, 'evictions')) >= 1, 'unpinned content was evicted instead')
  const pinnedBytes = pinned.reduce((n, d) => n + (disk.get(d) ?? 0), 0)
  t.match((await get(`${m1.url}/metrics`)).body.toString(), new RegExp(`regmirror_cache_pinned_bytes ${pinnedBytes}\\b`))
  await m1.close()

  // Pins are resolved from disk before start-up enforces the smaller cap.
  const m2 = await startMirror(t, cfg(pinnedBytes + 100 * KB), { dataDir: m1.dataDir })
  disk = await onDisk(m2)
  for (const d of pinned) t.ok(disk.has(d), 'pinned content survived the start-up eviction')
  t.ok(total(disk) <= pinnedBytes + 100 * KB)
})

t.test('a pinned tag that moves pins the new image and releases the old one', async (t) => {
  const fake = await fakeUpstream(t)
  const one = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [10 * KB] }
  const v1 = fake.addImage('library/moving', 'stable', one)
  const m = await startMirror(t, {
    ...mirrorConfig(fake, { maxSize: 10_000 * KB, pins: ['docker.io/library/moving:stable'] }),
    tagTtl: '50ms',
  })
  await get(`${m.url}/v2/moving/manifests/stable`, { accept: ACCEPT_OCI_MANIFESTS })
  t.ok(m.app.services.index.isPinned(v1.digest))
  t.ok(m.app.services.index.isPinned(v1.blobs[1]!.digest), 'its layer too, before it was pulled')
  const v2 = fake.addImage('library/moving', 'stable', one)
  await sleep(80)
  await get(`${m.url}/v2/moving/manifests/stable`, { accept: ACCEPT_OCI_MANIFESTS })
  t.ok(m.app.services.index.isPinned(v2.digest), 'the new image is pinned')
  t.ok(m.app.services.index.isPinned(v2.blobs[1]!.digest))
  t.notOk(m.app.services.index.isPinned(v1.digest), 'the old one is not any more')
})
