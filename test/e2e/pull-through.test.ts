/**
 * regmirror in front of real registries, pulled by skopeo: a token-auth CNCF distribution named docker.io (the
 * bearer flow, token cache and scopes run against a real registry) and a no-auth distribution named ghcr.io,
 * reached with a path prefix. Every digest a client receives is checked against the image that was pushed.
 */
import t from 'tap'
import { join } from 'node:path'
import { startMirror, type TestMirror } from '../helpers/mirror.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { AMD64_ARM64, buildOciLayout, type OciLayout } from '../helpers/oci-image.js'
import type { TokenServer } from '../helpers/token-server.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { pushLayout, skopeoCopy, skopeoInspect } from '../helpers/skopeo.js'
import { blobGets, readPulledDir, readPulledOciLayout } from '../helpers/verify.js'
import { sha256 } from '../helpers/oci-fixtures.js'

const PLATFORMS = AMD64_ARM64
const MiB = 1024 * 1024

interface Setup {
  work: string
  tokens: TokenServer
  hub: Distribution
  ghcr: Distribution
  app: OciLayout
  multi: OciLayout
  tool: OciLayout
  mirror: TestMirror
  mirrorHost: string
  /** tokens.requests().length once the pushes were done: what came after is regmirror's. */
  tokenMark: number
}

async function setup(): Promise<Setup> {
  const work = await makeTempDir('pull')
  t.teardown(() => removeTempDir(work))
  const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
  const tokens = hub.tokenServer!
  const ghcr = await startDistribution({ auth: 'none', t })
  const [app, multi, tool] = await Promise.all([
    buildOciLayout(join(work, 'app'), { tag: 'v1', layerSizes: [3 * MiB, 1 * MiB], platforms: PLATFORMS }),
    buildOciLayout(join(work, 'multi'), { tag: 'v1', layerSizes: [2 * MiB, 512 * 1024], platforms: PLATFORMS }),
    buildOciLayout(join(work, 'tool'), { tag: 'v1', layerSizes: [1 * MiB] }),
  ])
  await Promise.all([
    pushLayout(app.layoutDir, 'v1', hub.hostPort, 'e2e/app', { destCreds: 'pusher:secret' }),
    pushLayout(multi.layoutDir, 'v1', hub.hostPort, 'e2e/multi', { destCreds: 'pusher:secret' }),
    pushLayout(tool.layoutDir, 'v1', ghcr.hostPort, 'e2e/tool'),
  ])
  const mirror = await startMirror(t, {
    upstreams: [
      { name: 'docker.io', url: hub.url },
      { name: 'ghcr.io', url: ghcr.url },
    ],
    tagTtl: '1h',
  })
  return { work, tokens, hub, ghcr, app, multi, tool, mirror, mirrorHost: new URL(mirror.url).host, tokenMark: tokens.requests().length }
}

/** index + manifests + configs + layers: every object an `oci:` copy with --all writes. */
function allDigests(l: OciLayout): string[] {
  return [...(l.indexDigest !== undefined ? [l.indexDigest] : []), ...l.manifestDigests, ...l.blobDigests].sort()
}

if (requirePrograms(t, ['docker-registry', 'skopeo', 'openssl'])) {
  const s = await setup()
  const appRef = `docker://${s.mirrorHost}/e2e/app:v1`

  t.test('cold: skopeo copies a multi-arch image through the mirror and every digest matches the source', async (t) => {
    const mark = s.hub.requests().length
    const dest = join(s.work, 'pulled-cold')
    await skopeoCopy(appRef, `oci:${dest}:v1`, { all: true, preserveDigests: true })
    const pulled = await readPulledOciLayout(dest)
    t.equal(pulled.topDigest, s.app.indexDigest, 'the tag resolves to the pushed index')
    t.same(pulled.corrupt, [], 'every blob hashes to its name')
    t.same(pulled.blobDigests, allDigests(s.app), 'index, manifests, configs and layers: exactly the source digests')

    const gets = blobGets(s.hub.requests().slice(mark))
    for (const d of s.app.blobDigests) {
      t.equal(gets.filter((r) => r.path === `/v2/e2e/app/blobs/${d}`).length, 1, `${d.slice(0, 19)} came from upstream once`)
    }
  })

  t.test('skopeo inspect through the mirror', async (t) => {
    const raw = await skopeoInspect(appRef, { raw: true })
    t.equal(sha256(raw.stdout), s.app.indexDigest, 'inspect --raw returns the index byte for byte')
    const arm64 = s.app.images.find((i) => i.platform.architecture === 'arm64')!
    const info = JSON.parse(
      (await skopeoInspect(appRef, { extraArgs: ['--override-arch', 'arm64', '--override-os', 'linux'] })).stdout,
    ) as {
      Architecture: string
      Os: string
      Layers: string[]
    }
    t.equal(info.Architecture, 'arm64')
    t.equal(info.Os, 'linux')
    t.same(info.Layers, arm64.layerDigests, 'the arm64 image has its own layers')
  })

  t.test('warm: a second pull within the TTL makes no upstream request at all', async (t) => {
    const mark = s.hub.requests().length
    const dest = join(s.work, 'pulled-warm')
    await skopeoCopy(appRef, `oci:${dest}:v1`, { all: true, preserveDigests: true })
    const pulled = await readPulledOciLayout(dest)
    t.equal(pulled.topDigest, s.app.indexDigest)
    t.same(pulled.corrupt, [])
    t.same(pulled.blobDigests, allDigests(s.app))
    const after = s.hub.requests().slice(mark)
    t.same(blobGets(after), [], 'zero upstream blob requests')
    t.same(
      after.map((r) => `${r.method} ${r.path}`),
      [],
      'and no tag or manifest request either',
    )
  })

  t.test('platform selection: skopeo --override-arch arm64 pulls only the arm64 image', async (t) => {
    const mark = s.hub.requests().length
    const arm64 = s.multi.images.find((i) => i.platform.architecture === 'arm64')!
    const amd64 = s.multi.images.find((i) => i.platform.architecture === 'amd64')!
    const dest = join(s.work, 'pulled-arm64')
    await skopeoCopy(`docker://${s.mirrorHost}/e2e/multi:v1`, `dir:${dest}`, {
      extraArgs: ['--override-arch', 'arm64', '--override-os', 'linux'],
    })
    const pulled = await readPulledDir(dest)
    t.equal(pulled.manifestDigest, arm64.manifestDigest, 'the arm64 manifest, byte for byte')
    t.same(pulled.corrupt, [])
    t.same(pulled.blobDigests, [arm64.configDigest, ...arm64.layerDigests].sort(), 'its config and layers')
    const gets = blobGets(s.hub.requests().slice(mark))
    t.same(blobGets(gets, [amd64.configDigest, ...amd64.layerDigests]), [], 'no amd64 blob was fetched upstream')
    t.equal(blobGets(gets, arm64.layerDigests).length, arm64.layerDigests.length, 'each arm64 layer was')
  })

  t.test('a second upstream by path prefix: /v2/ghcr.io/... goes to the no-auth registry', async (t) => {
    const hubMark = s.hub.requests().length
    const dest = join(s.work, 'pulled-tool')
    await skopeoCopy(`docker://${s.mirrorHost}/ghcr.io/e2e/tool:v1`, `dir:${dest}`)
    const pulled = await readPulledDir(dest)
    t.equal(pulled.manifestDigest, s.tool.digest, 'the manifest pushed to the second registry')
    t.same(pulled.corrupt, [])
    t.same(pulled.blobDigests, [...s.tool.blobDigests].sort())
    t.equal(blobGets(s.ghcr.requests(), s.tool.layerDigests).length, 1, 'the layer came from the ghcr.io upstream, as e2e/tool')
    t.same(s.hub.requests().slice(hubMark), [], 'nothing went to docker.io')
  })

  t.test('tokens: one anonymous pull token per repository scope, reused across every request', async (t) => {
    const byMirror = s.tokens.requests().slice(s.tokenMark)
    t.ok(byMirror.length > 0, 'the mirror went through the bearer flow')
    t.same(
      byMirror.filter((r) => r.authenticated),
      [],
      'anonymous: no credentials configured, none sent',
    )
    const scopes = byMirror.map((r) => r.scopes.join(' ')).sort()
    t.same(scopes, ['repository:e2e/app:pull', 'repository:e2e/multi:pull'], 'exactly one token per scope')
    const hubRequests = s.hub.requests().filter((r) => r.headers['user-agent'] === 'regmirror')
    t.ok(hubRequests.length > 2 * scopes.length, `the ${hubRequests.length} upstream requests shared those tokens`)
    t.equal(hubRequests.filter((r) => r.status === 401).length, scopes.length, 'one 401 challenge per scope, then tokens sent up front')
    t.notMatch(s.mirror.logs.join('\n'), /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/, 'no token in the logs')
  })
}
