import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { MediaTypes, sha256, startFakeRegistry, type Fault } from '../helpers/fake-registry/index.js'
import { get, startMirror, type TestMirror } from '../helpers/mirror.js'
import { ACCEPT_IMAGE_MANIFESTS } from '../helpers/oci-http.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [300_000] }

async function setup(t: Test) {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/bad', '1', ONE)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], retries: { resumeAttempts: 0, attempts: 1 } })
  return { fake, img, mirror }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  )
}

async function assertNothingCached(t: Test, mirror: TestMirror, digest: string) {
  const hex = digest.slice('sha256:'.length)
  t.notOk(await exists(join(mirror.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex)), 'nothing cached under the digest')
  t.same(await readdir(join(mirror.dataDir, 'tmp')), [], 'no temp file left')
}

function loggedWith(mirror: TestMirror, digest: string): boolean {
  return mirror.logs.some((l) => {
    const o = JSON.parse(l) as { upstream?: string; digest?: string; level: number }
    return o.upstream === 'docker.io' && o.digest === digest && o.level >= 50
  })
}

const blobFaults: [string, Fault, RegExp][] = [
  [
    'a body shorter than its Content-Length',
    { kind: 'drop', afterBytes: 1000, match: { server: 'cdn' } },
    /regmirror_fills_failed_total\{cause="upstream_error"\} 1/,
  ],
  [
    'a body longer than the blob',
    { kind: 'extra', bytes: 500, match: { server: 'cdn' } },
    /regmirror_fills_failed_total\{cause="digest_mismatch"\} 1/,
  ],
  [
    'a truncated body',
    { kind: 'truncate', afterBytes: 1000, match: { server: 'cdn' } },
    /regmirror_fills_failed_total\{cause="digest_mismatch"\} 1/,
  ],
  [
    'wrong bytes',
    { kind: 'wrongBytes', match: { server: 'cdn' } },
    /regmirror_upstream_refused_total\{upstream="docker.io",kind="blob",cause="digest_mismatch"\} 1/,
  ],
  [
    'a redirect loop',
    { kind: 'redirectLoop', match: { server: 'cdn' } },
    /regmirror_upstream_refused_total\{upstream="docker.io",kind="blob",cause="redirect_invalid"\} 1/,
  ],
  [
    'a redirect to ftp://',
    { kind: 'redirect', location: 'ftp://127.0.0.1/blob', match: { server: 'registry', path: /blobs/ } },
    /regmirror_upstream_refused_total\{upstream="docker.io",kind="blob",cause="redirect_invalid"\} 1/,
  ],
]

for (const [name, fault, metric] of blobFaults) {
  t.test(`blob: ${name} is refused, nothing cached, counted and logged`, async (t) => {
    const { fake, img, mirror } = await setup(t)
    const layer = img.blobs.find((b) => b.size === 300_000)!
    fake.fault(fault)
    const url = `${mirror.url}/v2/bad/blobs/${layer.digest}`
    const r = await get(url).catch((err: unknown) => err)
    if (r instanceof Error) t.pass('the response was broken off')
    else t.equal((r as { status: number }).status, 502, 'a gateway error before any byte')
    await assertNothingCached(t, mirror, layer.digest)
    t.match((await get(`${mirror.url}/metrics`)).body.toString(), metric)
    t.ok(loggedWith(mirror, layer.digest), 'an error log line names the upstream and the digest')
    fake.clearFaults()
    const ok = await get(url)
    t.equal(ok.status, 200)
    t.equal(sha256(ok.body), layer.digest)
    t.equal(ok.headers.get('x-regmirror-cache'), 'miss', 'fetched again: the bad answer was never cached')
  })
}

t.test('manifest answers that are wrong are refused, nothing cached, counted and logged', async (t) => {
  const { fake, img, mirror } = await setup(t)
  const big = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, pad: 'x'.repeat(4 * 1024 * 1024 + 10) }))
  const bigDigest = fake.addManifest('library/bad', big, MediaTypes.ociManifest)
  const cases: [string, string, Fault | undefined, string][] = [
    ['digest mismatch', img.digest, { kind: 'wrongBytes', match: { server: 'registry', path: /manifests/ } }, 'digest_mismatch'],
    [
      'truncated body',
      img.digest,
      { kind: 'truncate', afterBytes: 20, match: { server: 'registry', path: /manifests/ } },
      'digest_mismatch',
    ],
    ['over 4 MiB', bigDigest, undefined, 'manifest_too_large'],
    ['redirect loop', img.digest, { kind: 'redirectLoop', match: { server: 'registry', path: /manifests/ } }, 'redirect_invalid'],
    [
      'redirect to ftp://',
      img.digest,
      { kind: 'redirect', location: 'ftp://127.0.0.1/m', match: { server: 'registry', path: /manifests/ } },
      'redirect_invalid',
    ],
  ]
  for (const [name, digest, fault, cause] of cases) {
    fake.clearFaults()
    if (fault) fake.fault(fault)
    const before = mirror.logs.length
    const r = await get(`${mirror.url}/v2/bad/manifests/${digest}`, { accept: ACCEPT_IMAGE_MANIFESTS })
    t.equal(r.status, 502, `${name}: refused`)
    await assertNothingCached(t, mirror, digest)
    const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
    t.match(
      metrics,
      new RegExp(`regmirror_upstream_refused_total\\{upstream="docker.io",kind="manifest",cause="${cause}"\\} [1-9]`),
      `${name}: counted`,
    )
    const line = mirror.logs.slice(before).find((l) => l.includes('upstream manifest refused'))
    t.ok(line?.includes('"upstream":"docker.io"') && line.includes(digest), `${name}: logged with upstream and digest`)
  }
  fake.clearFaults()
  const ok = await get(`${mirror.url}/v2/bad/manifests/${img.digest}`, { accept: ACCEPT_IMAGE_MANIFESTS })
  t.equal(ok.status, 200)
  t.equal(sha256(ok.body), img.digest)
  t.equal(ok.headers.get('x-regmirror-cache'), 'miss')
})
