import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BlobStore } from '../../src/cache/blob-store.js'
import { LruIndex } from '../../src/cache/lru-index.js'
import { createLogger } from '../../src/log.js'
import { Metrics } from '../../src/metrics.js'
import { parseDigest, type Digest } from '../../src/oci/reference.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { sleep } from '../helpers/sleep.js'

// A disk that is slow to update access times: a shutdown right after a hit must still record it,
// or the next start evicts the blob that was just used.
class SlowTouchStore extends BlobStore {
  override async touch(d: Digest, when?: Date): Promise<void> {
    await sleep(150)
    await super.touch(d, when)
  }
}

t.test('flush waits for access times still being written', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rm-touch-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const store = new SlowTouchStore(dir)
  await store.init()
  const bytes = randomBytes(1000)
  const d = parseDigest(sha256(bytes))
  const tmp = store.tmpPathFor(d)
  const fh = await store.openTemp(tmp)
  await fh.writeFile(bytes)
  await fh.close()
  await store.commit(tmp, d)
  const before = (await stat(store.pathFor(d))).mtimeMs
  const index = new LruIndex(store, 1 << 20, 0, new Metrics({ defaultMetrics: false }), createLogger('silent'))
  await index.load()
  await sleep(20)
  index.touch(d.value)
  await index.flush()
  const after = (await stat(store.pathFor(d))).mtimeMs
  t.ok(after > before, `the access time was on disk when flush returned (${before} -> ${after})`)
})
