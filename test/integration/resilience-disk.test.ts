import { randomBytes } from 'node:crypto'
import { open, readdir, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror, type TestMirror } from '../helpers/mirror.js'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'
const MiB = 1024 * 1024

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' })
}

/** A real temp file whose writes fail once `limit` bytes are in it, like a disk filling up. */
async function fillingDisk(path: string, limit: number): Promise<FileHandle> {
  const fh = await open(path, 'w+')
  let written = 0
  return new Proxy(fh, {
    get(target, prop, receiver) {
      if (prop === 'write') {
        return async (buf: Buffer, off: number, len: number, pos: number) => {
          if (written + len > limit) throw enospc()
          written += len
          return target.write(buf, off, len, pos)
        }
      }
      if (prop === 'writeFile') {
        return async () => {
          throw enospc()
        }
      }
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}

async function cached(mirror: TestMirror, digest: string): Promise<boolean> {
  return stat(join(mirror.dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7))).then(
    () => true,
    () => false,
  )
}

t.test('a cache dir that cannot be written: clients are served straight from upstream, caching resumes later', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/full', '1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [3 * MiB] })
  const layer = img.blobs.find((b) => b.size === 3 * MiB)!
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const store = mirror.app.services.store
  const real = store.openTemp
  store.openTemp = async () => {
    throw Object.assign(new Error('EACCES: permission denied, open'), { code: 'EACCES' })
  }
  const man = await get(`${mirror.url}/v2/full/manifests/1`, { accept: ACCEPT })
  t.equal(man.status, 200, 'the tag is served')
  t.equal(sha256(man.body), img.digest)
  const url = `${mirror.url}/v2/full/blobs/${layer.digest}`
  const [a, b] = await Promise.all([get(url), get(url)])
  for (const r of [a, b]) {
    t.equal(r.status, 200)
    t.equal(sha256(r.body), layer.digest, 'verified bytes, streamed from upstream')
  }
  t.notOk(await cached(mirror, layer.digest), 'nothing cached')
  t.same(await readdir(join(mirror.dataDir, 'tmp')), [])
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  t.match(metrics, /regmirror_cache_write_errors_total\{code="EACCES"\} [1-9]/)
  t.ok(
    mirror.logs.some((l) => l.includes('cannot write to the cache') && l.includes(layer.digest)),
    'a log line names the blob',
  )

  store.openTemp = real
  fake.reset()
  const again = await get(url)
  t.equal(sha256(again.body), layer.digest)
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1, 'fetched again: it was not cached before')
  t.ok(await cached(mirror, layer.digest), 'caching resumed once the directory is writable')
  fake.reset()
  t.equal((await get(url)).headers.get('x-regmirror-cache'), 'hit')
  t.equal(fake.count({ server: 'cdn' }), 0)
})

t.test('the disk fills up in the middle of a download: the clients still get every byte', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const bytes = randomBytes(12 * MiB)
  const digest = fake.addBlob(bytes)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  const store = mirror.app.services.store
  const real = store.openTemp
  store.openTemp = (p) => fillingDisk(p, 2 * MiB)
  const url = `${mirror.url}/v2/library/mid/blobs/${digest}`
  const [a, b] = await Promise.all([get(url), get(url)])
  for (const r of [a, b]) {
    t.equal(r.status, 200)
    t.equal(r.body.length, bytes.length)
    t.equal(sha256(r.body), digest)
  }
  t.notOk(await cached(mirror, digest), 'not cached')
  t.same(await readdir(join(mirror.dataDir, 'tmp')), [], 'the partial temp file is gone')
  t.match((await get(`${mirror.url}/metrics`)).body.toString(), /regmirror_cache_write_errors_total\{code="ENOSPC"\} 1/)
  t.equal((mirror.app.services.index as unknown as { reserved: number }).reserved, 0, 'no space stays reserved for the failed write')

  store.openTemp = real
  const again = await get(url)
  t.equal(sha256(again.body), digest)
  t.ok(await cached(mirror, digest), 'space is back: cached')
})
