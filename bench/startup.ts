// Start-up with a large cache: creates N committed blob files (default 100,000) plus leftover
// temp files, then times what start-up does with them: wiping tmp/, scanning the store and
// rebuilding the LRU index in recency order. Reports the time of three runs (the first also
// wipes the leftover temp files; later ones read a warm directory cache).
//
//   node --import tsx bench/startup.ts [--blobs 100000]
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BlobStore } from '../src/cache/blob-store.js'
import { LruIndex } from '../src/cache/lru-index.js'
import { createLogger } from '../src/log.js'
import { Metrics } from '../src/metrics.js'

const { values } = parseArgs({ options: { blobs: { type: 'string', default: '100000' } } })
const count = Number(values.blobs)

const dataDir = await mkdtemp(join(tmpdir(), 'regmirror-startup-'))
const blobsDir = join(dataDir, 'blobs', 'sha256')
const t0 = performance.now()
const base = Date.now() - count * 1000
for (let i = 0; i < count; i += 500) {
  await Promise.all(
    Array.from({ length: Math.min(500, count - i) }, async (_, j) => {
      const hex = randomBytes(32).toString('hex')
      const dir = join(blobsDir, hex.slice(0, 2))
      await mkdir(dir, { recursive: true })
      const p = join(dir, hex)
      await writeFile(p, randomBytes(16))
      // Distinct access times, so the rebuilt order is a real order.
      const when = new Date(base + (i + j) * 1000)
      await utimes(p, when, when)
    }),
  )
}
await mkdir(join(dataDir, 'tmp'), { recursive: true })
for (let i = 0; i < 50; i++) await writeFile(join(dataDir, 'tmp', `${randomBytes(32).toString('hex')}.abc.tmp`), randomBytes(1024))
const created = (performance.now() - t0) / 1000

const runs: number[] = []
for (let run = 0; run < 3; run++) {
  const started = performance.now()
  const store = new BlobStore(dataDir)
  await store.init()
  const index = new LruIndex(store, Number.MAX_SAFE_INTEGER, 60_000, new Metrics({ defaultMetrics: false }), createLogger('silent'))
  await index.load()
  runs.push(performance.now() - started)
  if (index.count !== count) throw new Error(`indexed ${index.count} of ${count}`)
  const order = index.order()
  if (order.length !== count) throw new Error('order incomplete')
}
await rm(dataDir, { recursive: true, force: true })

console.log(`${count} blobs (created in ${created.toFixed(1)} s); node ${process.version}\n`)
console.log('| blobs | start-up (tmp wipe + scan + index), 3 runs |')
console.log('|---|---|')
console.log(`| ${count} | ${runs.map((ms) => `${(ms / 1000).toFixed(2)} s`).join(', ')} |`)
