import { randomBytes } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { get as httpGet } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { makeCa, makeServerCert } from '../helpers/certs.js'
import { runCli } from '../helpers/cli.js'
import { fetchBody, files, tempDir, until } from '../helpers/crash-tools.js'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { h2connect, h2get } from '../helpers/h2-client.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { sleep } from '../helpers/sleep.js'

/**
 * The workers whose request log lines name `path`, once `requests` of them are there (a line is written
 * when its response ends, and read from the pipe a little later).
 */
async function workersServing(logs: () => string[], path: string, requests: number): Promise<Set<number>> {
  const lines = () => logs().filter((l) => l.includes(path) && l.includes('"worker":'))
  await until(`${requests} request log lines`, async () => lines().length >= requests)
  const seen = new Set<number>()
  for (const line of lines()) {
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
  t.same([...(await workersServing(m.logs, path, 8))].sort(), [1, 2], 'the clients were served by both workers')
  // One /metrics answers for every process: the counters summed, each process's memory apart.
  const metrics = await (await fetch(`${m.url}/metrics`)).text()
  t.match(metrics, /^regmirror_fills_started_total 1$/m, 'one fill started, counted across the workers')
  // A client that asks once the download is over reads the cached blob instead of joining it (under load, some do).
  const joined = Number(/^regmirror_fill_readers_joined_total (\d+)$/m.exec(metrics)?.[1])
  t.ok(joined >= 1 && joined <= 7, `other clients joined it, here or on the other worker (${joined} of 7)`)
  for (const w of ['0', '1', '2'])
    t.match(metrics, new RegExp(`^regmirror_process_resident_memory_bytes\\{worker="${w}"\\} \\d+`, 'm'), `RSS of process ${w}`)
})

/** pids of the workers started so far, by slot, in order (a restarted worker adds a second pid). */
function workerPids(logs: string[]): Map<number, number[]> {
  const out = new Map<number, number[]>()
  for (const line of logs) {
    if (!line.includes('"worker started"')) continue
    const { slot, pid } = JSON.parse(line) as { slot: number; pid: number }
    out.set(slot, [...(out.get(slot) ?? []), pid])
  }
  return out
}

t.test('a worker killed with kill -9 during fills: the other serves on, it is restarted, verify finds the cache clean', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const blobs = Array.from({ length: 6 }, () => randomBytes(1024 * 1024))
  const digests = blobs.map((b) => fake.addBlob(b))
  fake.fault({ kind: 'slow', bytesPerSecond: 300_000, match: { server: 'cdn' } })
  const data = await tempDir(t)
  const args = ['--data', data, '--upstream', `docker.io=${fake.url}`, '--workers', '2']
  const m = await startMirrorProcess(args)
  t.teardown(() => m.program.stop())
  const url = (d: string) => `${m.url}/v2/library/crash/blobs/${d}`
  // Every blob twice: the second client of each follows the first one's download, on either worker.
  const inflight = [...digests, ...digests].map((d) => fetchBody(url(d)))
  await until('downloads under way in tmp/', async () => (await readdir(join(data, 'tmp'))).length >= digests.length)
  const victim = workerPids(m.logs()).get(1)![0]!
  process.kill(victim, 'SIGKILL')
  let completed = 0
  for (const [i, r] of (await Promise.all(inflight)).entries()) {
    if (r instanceof Error) continue
    t.equal(r.status, 200)
    t.equal(sha256(r.body), digests[i % digests.length], 'a response that completed has the verified bytes')
    completed++
  }
  t.ok(completed > 0, "the surviving worker's clients completed")
  t.ok(completed < digests.length * 2, "the killed worker's clients (and its downloads' followers) were broken off")
  await until('the killed worker restarted', async () => (workerPids(m.logs()).get(1) ?? []).length === 2)
  fake.clearFaults()
  for (const d of digests) {
    const r = await fetchBody(url(d))
    if (r instanceof Error) throw r
    t.equal(sha256(r.body), d, 'every blob is served whole after the crash')
  }
  t.ok(
    m.logs().some((l) => l.includes('"worker exited; its downloads failed, restarting it"')),
    'the primary saw the crash',
  )
  await m.program.stop()
  t.equal((await m.program.exit).code, 0, 'the mirror stopped cleanly')
  t.same(await readdir(join(data, 'tmp')), [], 'no temp file left behind')
  const verify = await runCli(['verify', '--data', data])
  t.equal(verify.code, 0, `verify is clean:\n${verify.stdout}${verify.stderr}`)
  t.same(
    (await files(join(data, 'blobs', 'sha256'))).sort(),
    digests.map((d) => d.slice('sha256:'.length)).sort(),
    'every blob cached once',
  )
})

/** Bytes of the files under `dir`, one level of prefixes deep (blobs/sha256) or flat (tmp). */
/** Every file under `dir` (recursively) with its size; a file removed while it is read is left out. */
async function sizesIn(dir: string, into = new Map<string, number>()): Promise<Map<string, number>> {
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name)
    if (e.isDirectory()) await sizesIn(p, into)
    else
      await stat(p).then(
        (st) => into.set(p, st.size),
        () => {},
      )
  }
  return into
}

async function bytesIn(dir: string): Promise<number> {
  return [...(await sizesIn(dir)).values()].reduce((a, b) => a + b, 0)
}

/** A GET on its own connection whose body is read only when `finish()` is called. */
function pausedGet(url: string): Promise<{ finish(): Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false }, (res) => {
      res.pause()
      resolve({
        finish: async () => {
          const chunks: Buffer[] = []
          for await (const c of res) chunks.push(c as Buffer)
          return Buffer.concat(chunks)
        },
      })
    })
    req.on('error', reject)
  })
}

t.test(
  'LRU and size cap across workers: the cache never exceeds the cap; a blob read on one worker is not evicted by fills on another',
  async (t) => {
    const fake = await startFakeRegistry()
    t.teardown(() => fake.close())
    const MiB = 1024 * 1024
    const cap = 20 * MiB
    // The first is held open by a reader: larger than what the sockets' buffers take, so its response
    // cannot end before the client reads it. The others need its room once two of them are cached.
    const blobs = [randomBytes(12 * MiB), ...Array.from({ length: 5 }, () => randomBytes(4 * MiB))]
    const digests = blobs.map((b) => fake.addBlob(b))
    const data = await tempDir(t)
    const m = await startMirrorProcess(['--data', data, '--upstream', `docker.io=${fake.url}`, '--workers', '2', '--max-size', String(cap)])
    t.teardown(() => m.program.stop())
    const url = (d: string) => `${m.url}/v2/library/lru/blobs/${d}`
    let peak = 0
    let polling = true
    const poller = (async () => {
      while (polling) {
        // The two directories are read one after the other: a sample is kept only if blobs/ did not change meanwhile,
        // else a victim deleted from blobs/ after it was counted would be added to the temp file that took its room.
        const before = await sizesIn(join(data, 'blobs'))
        const inTmp = await bytesIn(join(data, 'tmp'))
        const after = await sizesIn(join(data, 'blobs'))
        const same = before.size === after.size && [...before.keys()].every((k) => after.has(k))
        if (same) peak = Math.max(peak, [...before.values()].reduce((a, b) => a + b, 0) + inTmp)
        await sleep(10)
      }
    })()
    const first = await fetchBody(url(digests[0]!))
    if (first instanceof Error) throw first
    // The oldest entry, held open by a client that has not read it yet.
    const reader = await pausedGet(url(digests[0]!))
    // Fills on new connections, which the primary hands to the workers in turn: some land on the other worker.
    for (const d of digests.slice(1)) {
      const r = await fetchBody(url(d))
      if (r instanceof Error) throw r
      t.equal(sha256(r.body), d)
    }
    const held = digests[0]!.slice('sha256:'.length)
    t.ok((await files(join(data, 'blobs', 'sha256'))).includes(held), 'the blob being read was not evicted')
    t.equal(sha256(await reader.finish()), digests[0], 'and its reader got it whole')
    // Several at once, from both workers.
    const burst = await Promise.all(digests.slice(1, 5).map((d) => fetchBody(url(d))))
    for (const [i, r] of burst.entries()) {
      if (r instanceof Error) throw r
      t.equal(sha256(r.body), digests[i + 1])
    }
    polling = false
    await poller
    t.ok(peak <= cap, `blobs/ and tmp/ never held more than the cap (peak ${peak} of ${cap})`)
    t.ok((await bytesIn(join(data, 'blobs'))) <= cap, 'nor at the end')
    const fills = await Promise.all(digests.slice(1).map((d) => workersServing(m.logs, `/v2/library/lru/blobs/${d}`, 1)))
    t.ok(fills.some((w) => w.size > 0) && new Set(fills.flatMap((w) => [...w])).size === 2, 'the fills ran on both workers')
  },
)

t.test('workers accept on the TLS listener too (HTTP/2), port 0 included, and share its downloads with the plain one', async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const blob = randomBytes(2 * 1024 * 1024)
  const digest = fake.addBlob(blob)
  fake.fault({ kind: 'slow', bytesPerSecond: 1_000_000, match: { server: 'cdn' } })
  const data = await tempDir(t)
  const ca = await makeCa(data)
  const { cert, key } = await makeServerCert(ca, 'mirror')
  const m = await startMirrorProcess(['--data', data, '--upstream', `docker.io=${fake.url}`, '--workers', '2'], {
    REGMIRROR_TLS_CERT: cert,
    REGMIRROR_TLS_KEY: key,
    REGMIRROR_TLS_LISTEN: '127.0.0.1:0',
  })
  t.teardown(() => m.program.stop())
  const listening = JSON.parse(m.logs().find((l) => l.includes('"regmirror listening"'))!) as { tls: { port: number } }
  t.ok(listening.tls.port > 0, 'the one listening line names the TLS port')
  const sessions = await Promise.all([0, 1, 2, 3].map(() => h2connect(`https://127.0.0.1:${listening.tls.port}`, ca.caCert)))
  t.teardown(() => sessions.forEach((s) => s.close()))
  const path = `/v2/library/tls/blobs/${digest}`
  const [plain, ...overTls] = await Promise.all([fetchBody(`${m.url}${path}`), ...sessions.map((s) => h2get(s, path))])
  if (plain instanceof Error) throw plain
  for (const r of [plain, ...overTls]) {
    t.equal(r.status, 200)
    t.equal(sha256(r.body), digest)
  }
  t.equal(fake.count({ server: 'cdn', method: 'GET' }), 1, 'one download for both listeners')
  t.same([...(await workersServing(m.logs, path, 5))].sort(), [1, 2], 'TLS sessions reached both workers')
})
