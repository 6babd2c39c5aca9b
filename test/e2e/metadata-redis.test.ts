/**
 * The shared metadata store against a real redis-server: the conformance suite the in-memory store also passes,
 * then two regmirror instances sharing one Redis in front of a token-auth CNCF distribution, and a Redis outage.
 */
import t from 'tap'
import { MANIFEST_ACCEPT as ACCEPT } from '../../src/oci/media-types.js'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TAG_RECORD_TTL_MS } from '../../src/cache/metadata-store.js'
import { metadataConformance, openStores } from '../helpers/metadata-conformance.js'
import { get, startMirror } from '../helpers/mirror.js'
import { requirePrograms } from '../helpers/programs.js'
import { redisCommand, startRedis } from '../helpers/redis.js'
import { startDistribution } from '../helpers/distribution.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { pushLayout } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { sleep } from '../helpers/sleep.js'

if (requirePrograms(t, ['redis-server', 'docker-registry', 'skopeo', 'openssl'])) {
  t.test('conformance: metadata store on Redis', async (t) => {
    const redis = await startRedis({ t })
    metadataConformance(t, ({ dataDir, prefix }) => openStores(dataDir, { redis: redis.url, prefix }))
  })

  t.test('Redis holds keys under the prefix, tokens with a TTL equal to their lifetime, tags for a week', async (t) => {
    const redis = await startRedis({ t })
    const dataDir = await makeTempDir('meta')
    t.teardown(() => removeTempDir(dataDir))
    const prefix = `p${randomBytes(4).toString('hex')}`
    const { store, tokens, close } = await openStores(dataDir, { redis: redis.url, prefix })
    t.teardown(close)
    await store.setTag('docker.io', 'library/alpine', '3.20', { digest: `sha256:${'a'.repeat(64)}`, mediaType: 'x', size: 1, checkedAt: 1 })
    await tokens.setToken('realm\0svc\0scope', { token: 'secret', expiresAt: Date.now() + 400 })
    t.equal(await redisCommand(redis.port, `KEYS ${prefix}::*`), '*2', 'a tag and a token, both under the prefix')
    t.equal(await redisCommand(redis.port, 'DBSIZE'), ':2', 'nothing outside it')
    const tagTtl = Number((await redisCommand(redis.port, `TTL ${prefix}::tag:docker.io/library/alpine:3.20`)).slice(1))
    t.ok(tagTtl > TAG_RECORD_TTL_MS / 1000 - 60 && tagTtl <= TAG_RECORD_TTL_MS / 1000, `a tag record ages out of Redis (TTL ${tagTtl} s)`)
    await sleep(900)
    t.equal(await redisCommand(redis.port, `KEYS ${prefix}::token:*`), '*0', 'Redis itself expired the token')
    t.equal(await redisCommand(redis.port, `KEYS ${prefix}::tag:*`), '*1', 'the tag is still there')
  })

  t.test('two regmirror instances share tag resolutions and tokens through Redis; an outage falls back to disk', async (t) => {
    const work = await makeTempDir('shared')
    t.teardown(() => removeTempDir(work))
    const redis = await startRedis({ t })
    const registry = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const tokens = registry.tokenServer!
    const app = await buildOciLayout(join(work, 'app'), { tag: 'v1', layerSizes: [512 * 1024] })
    const other = await buildOciLayout(join(work, 'other'), { tag: 'v1', layerSizes: [256 * 1024] })
    await pushLayout(app.layoutDir, 'v1', registry.hostPort, 'e2e/app', { destCreds: 'pusher:secret' })
    await pushLayout(other.layoutDir, 'v1', registry.hostPort, 'e2e/other', { destCreds: 'pusher:secret' })

    const config = {
      upstreams: [{ name: 'docker.io', url: registry.url }],
      tagTtl: '10m',
      metadata: { redis: redis.url, prefix: `shared-${randomBytes(4).toString('hex')}` },
    }
    const a = await startMirror(t, config)
    const b = await startMirror(t, config)
    t.not(a.dataDir, b.dataDir)

    const viaA = await get(`${a.url}/v2/e2e/app/manifests/v1`, { accept: ACCEPT })
    t.equal(viaA.status, 200)
    t.equal(sha256(viaA.body), app.digest, 'A resolves the tag to the pushed manifest')
    const issuedAfterA = tokens.tokensIssued()
    t.ok(issuedAfterA >= 1, 'A fetched a pull token')
    const seenBefore = registry.requests().length

    const viaB = await get(`${b.url}/v2/e2e/app/manifests/v1`, { accept: ACCEPT })
    t.equal(viaB.status, 200)
    t.equal(sha256(viaB.body), app.digest, 'B serves the same manifest')
    t.equal(viaB.headers.get('docker-content-digest'), app.digest)
    const byB = registry.requests().slice(seenBefore)
    t.same(
      byB.filter((r) => r.path === '/v2/e2e/app/manifests/v1'),
      [],
      'B did not ask the upstream what the tag means (no GET or HEAD by tag)',
    )
    t.ok(
      byB.some((r) => r.method === 'GET' && r.path === `/v2/e2e/app/manifests/${app.digest}` && r.status === 200),
      'B fetched the manifest by the digest A resolved',
    )
    t.equal(tokens.tokensIssued(), issuedAfterA, "B used A's token from Redis instead of asking the token server")

    const layer = app.layerDigests[0]!
    const blob = await get(`${b.url}/v2/e2e/app/blobs/${layer}`)
    t.equal(blob.status, 200)
    t.equal(sha256(blob.body), layer, 'B pulls the layer')
    t.equal(tokens.tokensIssued(), issuedAfterA, 'still no new token')

    const jwt = /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/
    t.notMatch([...a.logs, ...b.logs].join('\n'), jwt, 'no token in either log')

    // Redis goes away: both instances keep serving what they know from their disk links.
    await redis.stop()
    const seenBeforeOutage = registry.requests().length
    for (const [name, m] of [
      ['A', a],
      ['B', b],
    ] as const) {
      const tag = await get(`${m.url}/v2/e2e/app/manifests/v1`, { accept: ACCEPT })
      t.equal(tag.status, 200, `${name} still serves the cached tag with Redis down`)
      t.equal(sha256(tag.body), app.digest)
    }
    t.same(registry.requests().slice(seenBeforeOutage), [], 'the disk links were fresh: nothing asked upstream')
    const cold = await get(`${b.url}/v2/e2e/other/manifests/v1`, { accept: ACCEPT })
    t.equal(cold.status, 200, 'a tag never seen still resolves upstream with Redis down')
    t.equal(sha256(cold.body), other.digest)
    t.ok(
      b.logs.some((l) => l.includes('metadata store (keyv) failed')),
      'the outage is logged',
    )
    await t.resolves(Promise.all([a.close(), b.close()]), 'close() returns with Redis gone')
  })
}
