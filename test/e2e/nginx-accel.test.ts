/**
 * nginx in front of regmirror with `server.accelRedirect` (docs/configuration.md, "nginx in front"): skopeo pulls a
 * CNCF distribution's image through nginx. The cold pull streams from regmirror; on the warm pull every blob is a
 * cache hit that regmirror answers with X-Accel-Redirect and no body, and nginx sends the file from the blobs
 * directory: the client gets every byte and every digest verifies, while regmirror's own served-from-cache bytes do
 * not move. A client that reaches regmirror directly (no accel header) still gets the body.
 */
import t from 'tap'
import { join } from 'node:path'
import { startMirror } from '../helpers/mirror.js'
import { startNginx } from '../helpers/nginx.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { readPulledDir } from '../helpers/verify.js'
import { sha256 } from '../helpers/oci-fixtures.js'

const MiB = 1024 * 1024
const PREFIX = '/_regmirror_blobs/'

/** A counter's value from regmirror's /metrics (0 when it has no sample yet). */
async function counter(url: string, sample: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `))
  return line === undefined ? 0 : Number(line.slice(sample.length + 1))
}

if (requirePrograms(t, ['docker-registry', 'skopeo', 'nginx'])) {
  const work = await makeTempDir('accel')
  t.teardown(() => removeTempDir(work))
  const ghcr = await startDistribution({ auth: 'none', t })
  const image = await buildOciLayout(join(work, 'app'), { tag: 'v1', layerSizes: [3 * MiB, 1 * MiB] })
  await pushLayout(image.layoutDir, 'v1', ghcr.hostPort, 'e2e/app')
  const mirror = await startMirror(t, {
    upstreams: [{ name: 'ghcr.io', url: ghcr.url }],
    defaultUpstream: 'ghcr.io',
    server: { accelRedirect: { prefix: PREFIX } },
  })
  const nginx = await startNginx([mirror.url], { t, accel: { blobsDir: join(mirror.dataDir, 'blobs', 'sha256'), prefix: PREFIX } })
  const ref = `docker://${new URL(nginx.url).host}/ghcr.io/e2e/app:v1`
  const served = 'regmirror_served_bytes_total{source="cache"}'
  const accel = 'regmirror_accel_redirects_total'

  t.test('cold, then warm through nginx: the warm blobs are sent by nginx from disk, and every digest verifies', async (t) => {
    const cold = join(work, 'cold')
    await skopeoCopy(ref, `dir:${cold}`)
    t.same((await readPulledDir(cold)).corrupt, [], 'cold pull: every blob hashes to its name')

    const servedBefore = await counter(mirror.url, served)
    const accelBefore = await counter(mirror.url, accel)
    const logMark = (await nginx.accessLog()).length
    const logsMark = mirror.logs.length
    const warm = join(work, 'warm')
    await skopeoCopy(ref, `dir:${warm}`)
    const pulled = await readPulledDir(warm)
    t.same(pulled.corrupt, [], 'warm pull: every blob hashes to its name')
    t.same(pulled.blobDigests, [...image.blobDigests].sort(), 'config and layers: exactly the source digests')

    // regmirror's request lines of the warm pull: blobs answered without a body; what it did send from cache (the
    // manifest) is all that the served-bytes counter moved by.
    const requests = mirror.logs
      .slice(logsMark)
      .map((l) => JSON.parse(l) as { msg: string; path?: string; cache?: string; bytes?: number })
      .filter((l) => l.msg === 'request')
    const blobLines = requests.filter((l) => l.path?.includes('/blobs/'))
    t.equal(blobLines.length, image.blobDigests.length)
    t.ok(
      blobLines.every((l) => l.cache === 'hit' && l.bytes === 0),
      'every blob was a hit that regmirror answered with no body',
    )
    const fromCache = requests.filter((l) => l.cache === 'hit').reduce((n, l) => n + (l.bytes ?? 0), 0)
    t.equal((await counter(mirror.url, served)) - servedBefore, fromCache, 'no blob bytes in served-from-cache')
    t.equal((await counter(mirror.url, accel)) - accelBefore, image.blobDigests.length, 'one X-Accel-Redirect per blob')
    const lines = (await nginx.accessLog()).slice(logMark)
    for (const d of image.blobDigests) {
      const hex = d.slice('sha256:'.length)
      const line = lines.find((l) => l.includes(`/blobs/${d} `))
      t.match(line, new RegExp(` 200 \\d+ ${PREFIX}${hex.slice(0, 2)}/${hex}$`), `${d}: nginx answered it from the redirect`)
    }
  })

  t.test('through nginx a hit keeps its registry headers and Range is applied by nginx', async (t) => {
    const d = image.layerDigests[0]!
    const url = `${nginx.url}/v2/ghcr.io/e2e/app/blobs/${d}`
    const whole = await fetch(url)
    const body = Buffer.from(await whole.arrayBuffer())
    t.equal(whole.status, 200)
    t.equal(sha256(body), d, 'the whole body is the blob')
    t.equal(whole.headers.get('docker-content-digest'), d)
    t.equal(whole.headers.get('content-type'), 'application/octet-stream')
    t.equal(whole.headers.get('x-accel-redirect'), null, 'nginx does not pass the redirect on')
    const part = await fetch(url, { headers: { range: 'bytes=100-199' } })
    t.equal(part.status, 206)
    t.equal(part.headers.get('content-range'), `bytes 100-199/${body.length}`)
    t.ok(Buffer.from(await part.arrayBuffer()).equals(body.subarray(100, 200)), 'the requested bytes')
  })

  t.test('a client that reaches regmirror directly gets the body, not a redirect', async (t) => {
    const d = image.layerDigests[1]!
    const res = await fetch(`${mirror.url}/v2/ghcr.io/e2e/app/blobs/${d}`)
    t.equal(res.status, 200)
    t.equal(res.headers.get('x-accel-redirect'), null)
    t.equal(res.headers.get('x-regmirror-cache'), 'hit')
    t.equal(sha256(Buffer.from(await res.arrayBuffer())), d)
  })
}
