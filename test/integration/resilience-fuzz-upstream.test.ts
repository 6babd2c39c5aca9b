import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { verifyDataDir } from '../../src/cache/verify.js'
import { MediaTypes, sha256, startFakeRegistry, type Fault } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { prng } from '../helpers/prng.js'
import { sleep } from '../helpers/sleep.js'
import { ACCEPT_ALL_MANIFESTS } from '../helpers/oci-http.js'

const SEED = Number(process.env.FUZZ_SEED ?? 20261130)
const COUNT = Number(process.env.FUZZ_COUNT ?? 400)

/** A GET that gives up after 4 MiB: no blob here is larger, and a hostile body may never end. */
async function boundedGet(
  url: string,
  headers: Record<string, string>,
  method: string,
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const ac = new AbortController()
  const res = await fetch(url, { method, headers, signal: ac.signal })
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of res.body ?? []) {
    chunks.push(Buffer.from(c as Uint8Array))
    n += (c as Uint8Array).length
    if (n > 4 * 1024 * 1024) {
      ac.abort()
      throw new Error(`more than 4 MiB from ${url}`)
    }
  }
  return { status: res.status, headers: res.headers, body: Buffer.concat(chunks) }
}

t.test(`hostile upstream fuzz: ${COUNT} requests under random faults (seed ${SEED})`, async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const one = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [20_000, 250_000] }
  // Twice the cache's size in all, so eviction keeps sending requests upstream into the faults.
  const imgs = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((r, i) =>
    hub.addImage(`library/${r}`, '1', { ...one, format: i % 2 ? 'docker' : 'oci' }),
  )
  const multi = hub.addImage('library/m', '1', { layerSizes: [5_000] })
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url }],
    tagTtl: '20ms',
    // The faults include 404s; remembered, they would outlive the faults and hide the recovery checked below.
    negativeTtl: '0',
    cache: { maxSize: '1MiB' },
    retries: { attempts: 2, resumeAttempts: 2, backoff: '1ms' },
    offline: { failureThreshold: 1000 },
    timeouts: { bodyIdle: '300ms', headers: '1s' },
  })

  const r = prng(SEED)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T
  const other = imgs[0]!.manifests[0]!
  const faults: (() => Fault)[] = [
    () => ({ kind: 'status', status: pick([500, 502, 503, 429, 401, 403, 404]) }),
    () => ({ kind: 'slow', bytesPerSecond: 2_000_000 }),
    () => ({ kind: 'stall', afterBytes: pick([0, 100, 5_000]) }),
    () => ({ kind: 'drop', afterBytes: pick([0, 100, 5_000]) }),
    () => ({ kind: 'truncate', afterBytes: pick([0, 10, 5_000]) }),
    () => ({ kind: 'extra', bytes: pick([1, 1000]) }),
    () => ({ kind: 'wrongBytes' }),
    () => ({ kind: 'redirectLoop' }),
    () => ({
      kind: 'redirect',
      location: pick(['ftp://127.0.0.1/x', 'http://169.254.169.254/latest/meta-data/', '/v2/', `${hub.cdnUrl}/nowhere`]),
    }),
    () => ({
      kind: 'reply',
      status: 200,
      headers: { 'content-type': pick(['text/html', MediaTypes.ociManifest, 'application/octet-stream']) },
      body: pick(['', '<html>hi</html>', '{"schemaVersion":2}', other.config.bytes, other.body]),
    }),
    () => ({ kind: 'reply', status: 200, body: other.body, chunked: true }),
    () => ({
      kind: 'header',
      name: pick(['docker-content-digest', 'content-type', 'content-range', 'location']),
      value: pick([null, 'sha256:zz', `sha256:${'0'.repeat(64)}`, 'text/html', 'bytes 0-1/2', 'ftp://x']),
    }),
    () => ({ kind: 'delayHeaders', ms: pick([10, 400]) }),
    () => ({ kind: 'endless' }),
  ]
  const blobs = [...imgs, multi].flatMap((i) => i.blobs)
  const manifests = [...imgs, multi].flatMap((i) => [...i.manifests, ...(i.index ? [{ digest: i.index.digest }] : [])])
  const all = [...imgs, multi]
  const bad: string[] = []
  const statuses = new Map<number, number>()

  for (let i = 0; i < COUNT; i++) {
    hub.clearFaults()
    if (r() < 0.7)
      hub.fault({ ...pick(faults)(), match: { server: pick(['registry', 'cdn', 'auth'] as const) }, times: 1 + Math.floor(r() * 3) })
    const img = pick(all)
    const name = img.repo.replace('library/', '')
    const roll = r()
    let url: string
    let expect: string | undefined
    const headers: Record<string, string> = { accept: ACCEPT_ALL_MANIFESTS }
    if (roll < 0.3) url = `${mirror.url}/v2/${name}/manifests/1`
    else if (roll < 0.5) {
      const m = pick(manifests)
      url = `${mirror.url}/v2/${name}/manifests/${m.digest}`
      expect = m.digest
    } else {
      const b = pick(blobs)
      url = `${mirror.url}/v2/${name}/blobs/${b.digest}`
      expect = b.digest
      if (r() < 0.2) headers.range = `bytes=${Math.floor(r() * b.size)}-`
    }
    const method = r() < 0.1 ? 'HEAD' : 'GET'
    const res = await boundedGet(url, headers, method).catch((err: unknown) => err as Error)
    if (res instanceof Error) {
      // Broken off mid-body is the one honest signal after headers; more bytes than the cache holds is not.
      if (res.message.startsWith('more than')) bad.push(res.message)
      continue
    }
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    if (res.status >= 500 && res.status !== 502 && res.status !== 503) bad.push(`${res.status} ${method} ${url}`)
    if (res.status === 200 && method === 'GET') {
      const digest = res.headers.get('docker-content-digest')
      if (digest !== sha256(res.body)) bad.push(`200 with a body that is not ${digest}: ${url}`)
      if (expect !== undefined && digest !== expect && !url.includes('/manifests/')) bad.push(`200 for ${expect} carried ${digest}`)
    }
  }
  hub.clearFaults()
  if (bad.length > 0) t.comment(mirror.logs.filter((l) => l.includes('"status":500') || l.includes('INTERNAL')).join('\n'))
  t.same(bad, [], 'no 500, and every complete answer is the verified content')
  t.comment(`statuses: ${JSON.stringify([...statuses].sort())}`)

  // Health recovered: with the faults gone, every image pulls whole.
  for (const img of all) {
    const name = img.repo.replace('library/', '')
    const m = await get(`${mirror.url}/v2/${name}/manifests/1`, { accept: ACCEPT_ALL_MANIFESTS })
    t.equal(m.status, 200, `${name}: tag`)
    t.equal(sha256(m.body), img.digest)
    for (const b of img.blobs) t.equal(sha256((await get(`${mirror.url}/v2/${name}/blobs/${b.digest}`)).body), b.digest)
  }
  for (let i = 0; i < 100 && mirror.app.services.blobs.activeFills().length > 0; i++) await sleep(20)
  await mirror.close()

  // Nothing unverified on disk: every cached file hashes to its name, no temp file is left.
  const root = join(mirror.dataDir, 'blobs', 'sha256')
  for (const p of await readdir(root)) {
    for (const n of await readdir(join(root, p)))
      t.equal(sha256(await readFile(join(root, p, n))), `sha256:${n}`, `cached ${n.slice(0, 12)} is what its name says`)
  }
  t.same(await readdir(join(mirror.dataDir, 'tmp')), [], 'no temp file left')
  t.same((await verifyDataDir(mirror.dataDir)).problems, [], 'verify finds nothing wrong')
})
