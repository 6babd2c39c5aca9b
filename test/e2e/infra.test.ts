/**
 * Proves the e2e infrastructure itself, without regmirror: an OCI layout built by oci-image.ts is pushed by
 * skopeo to a token-auth distribution, read back with skopeo and with containerd's ctr through a hosts.toml
 * mirror entry, and a test-owned Redis answers PING.
 */
import t from 'tap'
import { join } from 'node:path'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { AMD64_ARM64, buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout, skopeoCopy, skopeoInspect } from '../helpers/skopeo.js'
import { startContainerd, writeHostsToml } from '../helpers/containerd.js'
import { redisCommand, startRedis } from '../helpers/redis.js'
import { sha256 } from '../helpers/oci-fixtures.js'

if (requirePrograms(t, ['docker-registry', 'skopeo', 'containerd', 'ctr', 'redis-server', 'openssl'])) {
  t.test('skopeo push to token-auth distribution, read back by skopeo and ctr', async (t) => {
    const work = await makeTempDir('infra')
    t.teardown(() => removeTempDir(work))
    const layout = await buildOciLayout(join(work, 'layout'), {
      tag: 'v1',
      layerSizes: [1024 * 1024, 256 * 1024],
      platforms: AMD64_ARM64,
    })
    t.ok(layout.indexDigest, 'two platforms make an image index')
    t.equal(layout.manifestDigests.length, 2)
    t.equal(layout.layerDigests.length, 4)

    const registry = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const tokens = registry.tokenServer!
    const ref = `docker://${registry.hostPort}/e2e/smoke:v1`

    await t.rejects(pushLayout(layout.layoutDir, 'v1', registry.hostPort, 'e2e/smoke'), 'anonymous push is refused')
    await t.rejects(
      pushLayout(layout.layoutDir, 'v1', registry.hostPort, 'e2e/smoke', { destCreds: 'pusher:wrong' }),
      /unauthorized|incorrect|401/i,
      'push with a wrong password is refused',
    )
    await pushLayout(layout.layoutDir, 'v1', registry.hostPort, 'e2e/smoke', { destCreds: 'pusher:secret' })
    t.ok(
      tokens.requests().some((r) => r.authenticated && r.granted.includes('repository:e2e/smoke:pull,push')),
      'the token server granted pull,push to the authenticated pusher',
    )

    const raw = await skopeoInspect(ref, { raw: true })
    t.equal(sha256(raw.stdout), layout.indexDigest, 'skopeo inspect --raw returns the pushed index byte for byte')
    const index = JSON.parse(raw.stdout) as { manifests: { digest: string }[] }
    t.same(index.manifests.map((m) => m.digest).sort(), [...layout.manifestDigests].sort())
    const amd64 = layout.images.find((img) => img.platform.architecture === 'amd64')!
    const arm64 = layout.images.find((img) => img.platform.architecture === 'arm64')!
    const armRaw = await skopeoInspect(`docker://${registry.hostPort}/e2e/smoke@${arm64.manifestDigest}`, { raw: true })
    t.equal(sha256(armRaw.stdout), arm64.manifestDigest, 'a platform manifest by digest round-trips')

    // Pull the whole index back into a fresh layout; blobs are verified by skopeo against their digests.
    await skopeoCopy(ref, `oci:${join(work, 'pulled')}:v1`, { all: true, preserveDigests: true })

    const blobGets = registry.requests().filter((r) => r.method === 'GET' && r.path.includes('/blobs/') && r.status === 200)
    t.ok(blobGets.length >= layout.blobDigests.length, 'the counting proxy saw the blob GETs of the pull')

    // containerd: docker.io/e2e/smoke:v1 resolved through a plain-http mirror entry pointing at distribution.
    const containerd = await startContainerd({ t })
    const hostsDir = join(work, 'hosts.d')
    await writeHostsToml(hostsDir, 'docker.io', registry.url)
    const before = registry.requests().length
    await containerd.ctr(['content', 'fetch', '--platform', 'linux/amd64', 'docker.io/e2e/smoke:v1'], { hostsDir })
    const listed = (await containerd.ctr(['content', 'ls', '-q'])).stdout.split('\n').filter((l) => l !== '')
    for (const digest of [layout.indexDigest!, amd64.manifestDigest, amd64.configDigest, ...amd64.layerDigests]) {
      t.ok(listed.includes(digest), `containerd fetched ${digest.slice(0, 19)}`)
    }
    for (const digest of arm64.layerDigests) t.notOk(listed.includes(digest), 'no arm64 layer was fetched')

    const ctrRequests = registry.requests().slice(before)
    t.comment('ctr -> mirror:', ctrRequests.map((r) => `${r.method} ${r.path}${r.query} ${r.status}`).join('\n'))
    t.ok(
      ctrRequests.some((r) => r.path === '/v2/e2e/smoke/manifests/v1' && r.query === '?ns=docker.io'),
      'ctr asks the mirror for the tag with ?ns=docker.io',
    )
    t.ok(
      ctrRequests.some((r) => r.method === 'GET' && r.path === `/v2/e2e/smoke/blobs/${amd64.layerDigests[0]}` && r.status === 200),
      'ctr GETs the layer from the mirror',
    )
  })

  t.test('redis starts, answers PING, stops', async (t) => {
    const redis = await startRedis({ t })
    t.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/)
    t.equal(await redisCommand(redis.port, 'PING'), '+PONG')
    await redis.stop()
    await t.rejects(redisCommand(redis.port, 'PING'), 'nothing listens after stop()')
  })
}
