/**
 * Issue #3's start-up bench: regmirror's time from process start to answering with N blobs on disk. Each blob is
 * `size` random bytes stored under its real sha256 as `blobs/sha256/<2 hex>/<64 hex>`, the layout the blob store
 * scans at start-up.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { peakRss, startRegmirror } from './servers.js'

export async function writeBlobs(dataDir: string, count: number, size: number): Promise<void> {
  const root = join(dataDir, 'blobs', 'sha256')
  await Promise.all(Array.from({ length: 256 }, (_, i) => mkdir(join(root, i.toString(16).padStart(2, '0')), { recursive: true })))
  const batch = 256
  for (let i = 0; i < count; i += batch) {
    const n = Math.min(batch, count - i)
    await Promise.all(
      Array.from({ length: n }, async () => {
        const bytes = randomBytes(size)
        const hex = createHash('sha256').update(bytes).digest('hex')
        await writeFile(join(root, hex.slice(0, 2), hex), bytes)
      }),
    )
  }
}

export interface StartupResult {
  blobs: number
  /** spawn → 'regmirror listening' log line */
  listeningMs: number | undefined
  /** spawn → first 200 from GET /v2/ (polled every 5 ms) */
  readyMs: number
  /** regmirror's own 'cache index loaded' ms (the scan and index rebuild alone) */
  indexLoadMs: number | undefined
  indexEntries: number | undefined
  /** VmHWM right after start-up */
  peakRssBytes: number
}

/** Starts regmirror on `dataDir` `runs` times and returns every run (the caller takes the median). */
export async function measureStartup(dataDir: string, blobs: number, runs: number): Promise<StartupResult[]> {
  const out: StartupResult[] = []
  for (let i = 0; i < runs; i++) {
    // The upstream is never contacted: nothing is requested but /v2/, which regmirror answers itself.
    const rm = await startRegmirror({ dataDir, upstreamUrl: 'http://127.0.0.1:9', timeoutMs: 120_000, pollMs: 5 })
    try {
      const peakRssBytes = await peakRss(rm.pid)
      const line = rm.program
        .output()
        .split('\n')
        .find((l) => l.includes('"cache index loaded"'))
      const parsed = line ? (JSON.parse(line) as { ms?: number; entries?: number }) : {}
      out.push({
        blobs,
        listeningMs: rm.startup.listeningMs,
        readyMs: rm.startup.readyMs,
        indexLoadMs: parsed.ms,
        indexEntries: parsed.entries,
        peakRssBytes,
      })
    } finally {
      await rm.stop()
    }
  }
  return out
}

/** For a quick look outside run.ts: `node --import tsx bench/startup.ts DATA_DIR N` */
if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, n] = process.argv.slice(2)
  if (!dir || !n) throw new Error('usage: startup.ts DATA_DIR COUNT')
  const exists = await readFile(join(dir, '.bench-blobs'), 'utf8').catch(() => '')
  if (exists.trim() !== n) {
    await writeBlobs(dir, Number(n), 1024)
    await writeFile(join(dir, '.bench-blobs'), n)
  }
  console.log(await measureStartup(dir, Number(n), 3))
}
