import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { Layout } from '../../src/cache/layout.js'
import { MetadataStore, type TagRecord } from '../../src/cache/metadata-store.js'
import { Kv, type KvOptions } from '../../src/kv.js'
import { createLogger } from '../../src/log.js'
import { parseDigest } from '../../src/oci/reference.js'
import { KvTokens, type SharedTokenStore } from '../../src/upstream/token-store.js'
import { sleep } from './sleep.js'

/**
 * Builds a store over `dataDir` whose keyv keys start with `prefix`. Two stores with the same
 * prefix share what keyv holds exactly when the backend does (Redis: yes; memory: no).
 */
export type MetadataStoreFactory = (opts: {
  dataDir: string
  prefix: string
}) => Promise<{ store: MetadataStore; tokens: SharedTokenStore; close(): Promise<void> }>

/** A metadata store and a token store on one kv, as the server builds them. */
export async function openStores(dataDir: string, opts: KvOptions) {
  const kv = await Kv.open(opts, createLogger('silent'))
  const store = new MetadataStore(new Layout(dataDir), kv, true)
  return { store, tokens: new KvTokens(kv), close: () => store.close() }
}

const digestOf = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`

function record(n: number, checkedAt = 1_700_000_000_000): TagRecord {
  return { digest: digestOf(n), mediaType: 'application/vnd.oci.image.index.v1+json', size: 100 + n, checkedAt }
}

/**
 * One behaviour, every backend: the same checks run against the in-memory keyv (test/unit) and
 * a real Redis (test/e2e). Each store the suite opens is closed by the suite.
 */
export function metadataConformance(t: Test, factory: MetadataStoreFactory): void {
  const open = async (t: Test, opts: { dataDir?: string; prefix?: string } = {}) => {
    let dataDir = opts.dataDir
    if (dataDir === undefined) {
      const dir = await mkdtemp(join(tmpdir(), 'regmirror-meta-'))
      t.teardown(() => rm(dir, { recursive: true, force: true }))
      dataDir = dir
    }
    const prefix = opts.prefix ?? `conf-${randomBytes(6).toString('hex')}`
    const { store, tokens, close } = await factory({ dataDir, prefix })
    t.teardown(close)
    return { store, tokens, dataDir, prefix }
  }

  t.test('tag records: set, get, overwrite, delete', async (t) => {
    const { store } = await open(t)
    t.equal(await store.getTag('docker.io', 'library/alpine', '3.20'), undefined, 'unknown tag')
    await store.setTag('docker.io', 'library/alpine', '3.20', record(1))
    t.same(await store.getTag('docker.io', 'library/alpine', '3.20'), record(1))
    t.equal(await store.getTag('docker.io', 'library/alpine', '3.21'), undefined, 'another tag is not affected')
    t.equal(await store.getTag('docker.io', 'library/nginx', '3.20'), undefined, 'another repository is not affected')
    t.equal(await store.getTag('ghcr.io', 'library/alpine', '3.20'), undefined, 'another upstream is not affected')
    await store.setTag('docker.io', 'library/alpine', '3.20', record(2, 1_700_000_001_000))
    t.same(await store.getTag('docker.io', 'library/alpine', '3.20'), record(2, 1_700_000_001_000), 'a moved tag overwrites')
    await store.deleteTag('docker.io', 'library/alpine', '3.20')
    t.equal(await store.getTag('docker.io', 'library/alpine', '3.20'), undefined, 'deleted')
    await t.resolves(store.deleteTag('docker.io', 'library/alpine', 'never-set'), 'deleting an unknown tag is fine')
  })

  t.test('a tag survives a restart through its disk link', async (t) => {
    const first = await open(t)
    await first.store.setTag('docker.io', 'library/redis', '7', record(3))
    await first.store.linkTag('docker.io', 'library/redis', '8', record(4))
    await first.store.close()
    // A fresh prefix: nothing in keyv, as after a restart with memory or a flushed Redis.
    const second = await open(t, { dataDir: first.dataDir })
    t.same(await second.store.getTag('docker.io', 'library/redis', '7'), record(3), 'found on disk')
    t.same(await second.store.getTag('docker.io', 'library/redis', '8'), record(4), 'a link written alone is found too')
    await second.store.deleteTag('docker.io', 'library/redis', '7')
    const third = await open(t, { dataDir: first.dataDir })
    t.equal(await third.store.getTag('docker.io', 'library/redis', '7'), undefined, 'a deleted tag is gone from disk too')
  })

  t.test('manifest info', async (t) => {
    const { store, dataDir } = await open(t)
    const d = parseDigest(digestOf(42))
    t.equal(await store.getManifestInfo(d), undefined)
    await store.setManifestInfo(d, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1234 })
    t.same(await store.getManifestInfo(d), { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1234 })
    const again = await open(t, { dataDir })
    t.same(
      await again.store.getManifestInfo(d),
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1234 },
      'persists across stores',
    )
    t.equal(await store.getManifestInfo(parseDigest(digestOf(43))), undefined, 'another digest is unknown')
  })

  t.test('prefixes isolate, and a shared backend shares within one prefix', async (t) => {
    const a = await open(t)
    const other = await open(t)
    const samePrefix = await open(t, { prefix: a.prefix })
    await a.store.setTag('docker.io', 'team/app', 'v1', record(5))
    await a.tokens.setToken('realm\0svc\0repository:team/app:pull', { token: 'tok-a', expiresAt: Date.now() + 60_000 })
    t.equal(await other.store.getTag('docker.io', 'team/app', 'v1'), undefined, 'another prefix (and data dir) does not see the tag')
    t.equal(await other.tokens.getToken('realm\0svc\0repository:team/app:pull'), undefined, 'nor the token')
    if (a.store.shared) {
      t.same(
        await samePrefix.store.getTag('docker.io', 'team/app', 'v1'),
        record(5),
        'same prefix, other data dir: the shared backend answers',
      )
      t.equal((await samePrefix.tokens.getToken('realm\0svc\0repository:team/app:pull'))?.token, 'tok-a', 'tokens are shared too')
    } else {
      t.equal(
        await samePrefix.store.getTag('docker.io', 'team/app', 'v1'),
        undefined,
        'an unshared store is local to its process and data dir',
      )
    }
  })

  t.test('tokens: set, get, delete, and gone when they expire', async (t) => {
    const { tokens: store } = await open(t)
    const key = 'https://auth.example/token\0registry\0repository:library/alpine:pull'
    t.equal(await store.getToken(key), undefined)
    const value = { token: 'secret-token-value', expiresAt: Date.now() + 60_000 }
    await store.setToken(key, value)
    t.same(await store.getToken(key), value)
    t.equal(await store.getToken(key.replace('alpine', 'nginx')), undefined, 'scoped by key')
    await store.deleteToken(key)
    t.equal(await store.getToken(key), undefined, 'deleted')
    await store.setToken(key, { token: 'already-expired', expiresAt: Date.now() - 1 })
    t.equal(await store.getToken(key), undefined, 'an expired token is not stored')
    await store.setToken(key, { token: 'short-lived', expiresAt: Date.now() + 150 })
    await sleep(400)
    t.equal(await store.getToken(key), undefined, 'the store drops a token when its lifetime is over')
  })
}
