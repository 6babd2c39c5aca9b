import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { MetadataStore } from '../../src/cache/metadata-store.js'
import { createLogger } from '../../src/log.js'
import { metadataConformance, openStores } from '../helpers/metadata-conformance.js'

t.test('in-memory metadata store', async (t) => {
  metadataConformance(t, ({ dataDir, prefix }) => openStores(dataDir, { prefix }))
})

t.test('the in-memory copy is bounded; what it drops is read back from the disk links', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'regmirror-meta-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const store = await MetadataStore.create(dataDir, { prefix: 'b', memoryEntries: 2 }, createLogger('silent'))
  t.teardown(() => store.close())
  const rec = (n: number) => ({ digest: `sha256:${n.toString(16).padStart(64, '0')}`, mediaType: 'x', size: n, checkedAt: n })
  for (let n = 1; n <= 5; n++) await store.setTag('docker.io', 'library/a', `t${n}`, rec(n))
  for (let n = 1; n <= 5; n++) t.same(await store.getTag('docker.io', 'library/a', `t${n}`), rec(n), `t${n} resolves`)
  // Without the disk links only what the bounded copy still holds is left.
  await rm(join(dataDir, 'repositories'), { recursive: true })
  const left = []
  for (let n = 1; n <= 5; n++) if (await store.getTag('docker.io', 'library/a', `t${n}`)) left.push(n)
  t.same(left, [4, 5], 'memory held the two most recently used records')
})
