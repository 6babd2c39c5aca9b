import { randomBytes } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror, type TestMirror } from '../helpers/mirror.js'
import { sleep } from '../helpers/sleep.js'

const MiB = 1024 * 1024

/** Bytes in the data directory's blobs/ and tmp/, sampled until stopped; the largest total seen. */
function watchDisk(mirror: TestMirror): { stop(): Promise<number> } {
  let peak = 0
  let running = true
  const size = async (dir: string): Promise<number> => {
    let n = 0
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = join(dir, e.name)
      n += e.isDirectory() ? await size(p) : ((await stat(p).catch(() => undefined))?.size ?? 0)
    }
    return n
  }
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, (await size(join(mirror.dataDir, 'blobs'))) + (await size(join(mirror.dataDir, 'tmp'))))
      await sleep(5)
    }
  })()
  return {
    stop: async () => {
      running = false
      await loop
      return peak
    },
  }
}

t.test('a blob with no room in the cache is streamed through memory: the disk never passes maxSize', async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const bytes = randomBytes(12 * MiB)
  const digest = hub.addBlob(bytes)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], cache: { maxSize: '2MiB' } })
  hub.fault({ kind: 'slow', bytesPerSecond: 24 * MiB, match: { server: 'cdn' } })
  const disk = watchDisk(mirror)
  const [a, b] = await Promise.all([get(`${mirror.url}/v2/library/x/blobs/${digest}`), get(`${mirror.url}/v2/library/x/blobs/${digest}`)])
  const peak = await disk.stop()
  for (const r of [a, b]) {
    t.equal(r.status, 200)
    t.equal(sha256(r.body), digest, 'every client gets the verified blob')
  }
  t.ok(peak <= 2 * MiB, `the data directory stayed within maxSize (peak ${peak} bytes)`)
  t.equal(hub.count({ server: 'cdn', method: 'GET' }), 1, 'two clients at once still shared one download')
  t.same(await readdir(join(mirror.dataDir, 'tmp')), [])
})

t.test('a blob of unannounced size is held to the size the registry gives, or else to the cap', async (t) => {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const small = randomBytes(3 * MiB)
  const smallDigest = hub.addBlob(small)
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'docker.io', url: hub.url }],
    cache: { maxSize: '24MiB' },
    retries: { resumeAttempts: 0 },
  })
  const url = (digest: string) => `${mirror.url}/v2/library/x/blobs/${digest}`

  // Chunked, without Content-Length: the registry's HEAD gives the size, and within it the blob is kept.
  hub.fault({ kind: 'reply', status: 200, body: small, chunked: true, match: { server: 'cdn' }, times: 1 })
  t.equal(sha256((await get(url(smallDigest))).body), smallDigest)
  t.equal((await get(url(smallDigest))).headers.get('x-regmirror-cache'), 'hit', 'an unsized blob that fits is cached')

  // Chunked and without end although the registry says how large the blob is: cut off there.
  const other = randomBytes(MiB)
  const otherDigest = hub.addBlob(other)
  hub.fault({ kind: 'endless', match: { server: 'cdn' }, times: 1 })
  const cut = await get(url(otherDigest)).catch((err: unknown) => err as Error)
  t.ok(cut instanceof Error || cut.status === 502, 'the endless body is refused')
  t.match((await get(`${mirror.url}/metrics`)).body.toString(), /regmirror_fills_failed_total\{cause="size_mismatch"\} 1/)

  // Without end and with no size anywhere: refused once it passes what the cache can hold.
  const endless = `sha256:${'ab'.repeat(32)}`
  hub.fault({ kind: 'endless', match: { server: 'registry', method: 'GET', path: new RegExp(endless) } })
  const disk = watchDisk(mirror)
  const received = await new Promise<number>((resolve, reject) => {
    const u = new URL(url(endless))
    let n = 0
    const req = request({ host: u.hostname, port: u.port, path: u.pathname }, (res) => {
      res.on('data', (c: Buffer) => {
        n += c.length
        if (n >= 100 * MiB) {
          req.destroy()
          reject(new Error('streamed without bound'))
        }
      })
      res.on('error', () => resolve(n))
      res.on('end', () => resolve(n))
    })
    req.on('error', () => resolve(n))
    req.end()
  })
  t.ok(received <= 24 * MiB, `the client was cut off at the cap (${received} bytes)`)
  const fills = () => mirror.app.services.blobs.activeFills().length
  for (let i = 0; i < 200 && fills() > 0; i++) await sleep(20)
  const peak = await disk.stop()
  t.equal(fills(), 0, 'the download was given up')
  t.ok(peak <= 24 * MiB, `the data directory stayed within maxSize (peak ${peak} bytes)`)
  t.same(await readdir(join(mirror.dataDir, 'tmp')), [], 'no temp file left')
  t.match((await get(`${mirror.url}/metrics`)).body.toString(), /regmirror_fills_failed_total\{cause="blob_size_unknown"\} 1/)
  // The room it reserved is given back: blobs are cached again.
  t.equal(sha256((await get(url(otherDigest))).body), otherDigest)
  t.equal((await get(url(otherDigest))).headers.get('x-regmirror-cache'), 'hit', 'the cache keeps blobs again')
})
