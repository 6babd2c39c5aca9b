import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BlobStore } from '../../src/cache/blob-store.js'
import { sha256 } from '../helpers/oci-fixtures.js'

t.test('scan finds every committed blob with its size and mtime, and nothing else', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rm-scan-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const store = new BlobStore(dir)
  await store.init()
  const root = join(dir, 'blobs', 'sha256')
  const expected = new Map<string, { size: number; mtimeMs: number }>()
  for (let i = 0; i < 40; i++) {
    const bytes = randomBytes(i * 7)
    const digest = sha256(bytes)
    const hex = digest.slice('sha256:'.length)
    await mkdir(join(root, hex.slice(0, 2)), { recursive: true })
    const path = join(root, hex.slice(0, 2), hex)
    await writeFile(path, bytes)
    const when = new Date(1_700_000_000_000 + i * 1000)
    await utimes(path, when, when)
    expected.set(digest, { size: bytes.length, mtimeMs: when.getTime() })
  }
  // Not content: a name in the wrong prefix dir, a temp-like name, a non-hex dir, a directory with a blob's name.
  const hex = 'ab'.repeat(32)
  await mkdir(join(root, 'cd'), { recursive: true })
  await writeFile(join(root, 'cd', hex), 'misplaced')
  await mkdir(join(root, 'ab'), { recursive: true })
  await writeFile(join(root, 'ab', `${hex}.1234.tmp`), 'partial')
  await mkdir(join(root, 'zz'), { recursive: true })
  await writeFile(join(root, 'zz', 'zz'.repeat(32)), 'not hex')
  await mkdir(join(root, 'ab', hex))
  await writeFile(join(root, 'README'), 'stray file at the prefix level')

  const found = await store.scan()
  t.equal(found.length, expected.size, 'only committed blobs')
  for (const b of found) {
    const want = expected.get(b.digest)
    t.ok(want, `${b.digest} is a committed blob`)
    t.equal(b.size, want?.size, 'size')
    t.equal(Math.round(b.mtimeMs), want?.mtimeMs, 'mtime (recency across restarts)')
  }
})

t.test('scan of a missing blobs dir is empty', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rm-scan-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  t.same(await new BlobStore(join(dir, 'nothing-here')).scan(), [])
})
