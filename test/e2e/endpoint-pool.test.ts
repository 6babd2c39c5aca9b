/**
 * Endpoint pools against real registries: one CNCF distribution reached through four endpoints in trust order
 * (a closed port, a proxy answering 503, a proxy that cuts the first big blob mid-way, a good proxy), pulled by
 * skopeo; and a mirror chained behind another regmirror as a prefix endpoint (`http://B/docker.io`).
 */
import t from 'tap'
import { join } from 'node:path'
import { startMirror } from '../helpers/mirror.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { startCountingProxy, type RequestRecord } from '../helpers/counting-proxy.js'
import { freePort } from '../helpers/free-port.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { readPulledDir } from '../helpers/verify.js'
import { get } from '../helpers/mirror.js'
import { stat } from 'node:fs/promises'

const MiB = 1024 * 1024
const CUT_AT = 1 * MiB

function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue
    const inner = line.slice(name.length + 1, line.indexOf('}'))
    if (want.every((w) => inner.split(',').includes(w))) return Number(line.slice(line.indexOf('}') + 1))
  }
  return undefined
}

function blobBytes(records: RequestRecord[], digest: string): number {
  return records.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${digest}`)).reduce((n, r) => n + r.bytes, 0)
}

if (requirePrograms(t, ['docker-registry', 'skopeo'])) {
  const work = await makeTempDir('pool')
  t.teardown(() => removeTempDir(work))
  const reg = await startDistribution({ auth: 'none', t })
  const [app, tool] = await Promise.all([
    buildOciLayout(join(work, 'app'), { tag: 'v1', layerSizes: [4 * MiB, 2 * MiB] }),
    buildOciLayout(join(work, 'tool'), { tag: 'v1', layerSizes: [3 * MiB] }),
  ])
  await pushLayout(app.layoutDir, 'v1', reg.hostPort, 'e2e/app')
  await pushLayout(tool.layoutDir, 'v1', reg.hostPort, 'e2e/tool')
  const regPort = Number(new URL(reg.directUrl).port)

  t.test('a pool of a closed port, a 503, a cut and a good endpoint: pulls complete, each blob once, bad endpoints skipped', async (t) => {
    const closed = `http://127.0.0.1:${await freePort()}`
    const broken = await startCountingProxy(regPort, { fault: () => ({ status: 503 }) })
    const faulty = await startCountingProxy(regPort, {
      // Blob bodies break off after CUT_AT bytes (smaller blobs pass whole); manifests pass.
      fault: ({ method, path }) => (method === 'GET' && path.includes('/blobs/') ? { cutAfter: CUT_AT } : undefined),
    })
    const good = await startCountingProxy(regPort)
    t.teardown(() => Promise.all([broken.stop(), faulty.stop(), good.stop()]))
    const mirror = await startMirror(t, {
      upstreams: [{ name: 'docker.io', urls: [closed, broken.url, faulty.url, good.url] }],
      tagTtl: '1h',
      offline: { failureThreshold: 3, coolDown: '10m' },
    })
    const host = new URL(mirror.url).host
    let afterApp = { faulty: 0, broken: 0 }
    const layerSizes = new Map<string, number>()
    for (const image of [app, tool]) {
      for (const d of image.layerDigests) layerSizes.set(d, (await stat(join(image.layoutDir, 'blobs', 'sha256', d.slice(7)))).size)
    }

    for (const [name, image] of [
      ['app', app],
      ['tool', tool],
    ] as const) {
      const dest = join(work, `pulled-${name}`)
      await skopeoCopy(`docker://${host}/e2e/${name}:v1`, `dir:${dest}`, { preserveDigests: true })
      const pulled = await readPulledDir(dest)
      t.equal(pulled.manifestDigest, image.digest, `${name}: the tag resolves to the pushed manifest`)
      t.same(pulled.corrupt, [], `${name}: every blob hashes to its name`)
      t.same(pulled.blobDigests, [...image.blobDigests].sort(), `${name}: exactly the source blobs`)
      if (name === 'app') afterApp = { faulty: faulty.requests().length, broken: broken.requests().length }
    }

    // Each layer crossed the link once: what the faulty endpoint sent before the cut plus the good one's resume.
    const cutRecords = faulty.requests().filter((r) => r.method === 'GET' && r.path.includes('/blobs/') && r.bytes === CUT_AT)
    // skopeo fetches layers in parallel: each that went to the faulty endpoint before it was set aside is cut.
    t.ok(cutRecords.length >= 1, 'a blob was cut mid-way at the faulty endpoint')
    for (const [d, size] of layerSizes) {
      const total = blobBytes(faulty.requests(), d) + blobBytes(good.requests(), d)
      t.comment(
        `layer ${d.slice(7, 19)}: ${blobBytes(faulty.requests(), d)} B from the faulty endpoint, ${blobBytes(good.requests(), d)} B from the good one`,
      )
      t.equal(total, size, `layer ${d.slice(7, 19)}: ${size} bytes in all, nothing fetched twice`)
    }
    for (const cut of cutRecords) {
      const resumed = good.requests().filter((r) => r.method === 'GET' && r.path === cut.path)
      t.equal(resumed.length, 1, 'the cut blob was resumed once, at the good endpoint')
      t.equal(resumed[0]?.headers.range, `bytes=${CUT_AT}-`, 'the resume starts at the byte reached')
    }

    // Each bad endpoint failed once and was then set aside for the cool-down: the second pull never asked them.
    t.equal(broken.requests().length, 1, 'the 503 endpoint was asked once')
    t.equal(afterApp.broken, 1, 'during the first pull too')
    t.equal(faulty.requests().length, afterApp.faulty, 'nothing went to the faulty endpoint after its cut')
    const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
    t.equal(
      metricValue(metrics, 'regmirror_upstream_endpoint_requests_total', { endpoint: closed, status: '0' }),
      1,
      'the closed port was tried once',
    )
    for (const [ep, up] of [
      [closed, 0],
      [broken.url, 0],
      [faulty.url, 0],
      [good.url, 1],
    ] as const) {
      t.equal(metricValue(metrics, 'regmirror_upstream_endpoint_up', { upstream: 'docker.io', endpoint: ep }), up, `${ep} up=${up}`)
    }
    t.equal(metricValue(metrics, 'regmirror_upstream_online', { upstream: 'docker.io' }), 1, 'the upstream stays online')
    t.ok(
      mirror.logs.some((l) => l.includes('endpoint set aside') && l.includes(broken.url)),
      'the log names the endpoint set aside',
    )
  })

  t.test('a mirror chained behind another regmirror as a prefix endpoint', async (t) => {
    const inner = await startMirror(t, { upstreams: [{ name: 'docker.io', url: reg.url }], tagTtl: '1h' })
    // A counting proxy in front of the inner mirror shows the paths the outer one sends.
    const innerPort = Number(new URL(inner.url).port)
    const front = await startCountingProxy(innerPort)
    t.teardown(() => front.stop())
    const outer = await startMirror(t, { upstreams: [{ name: 'docker.io', urls: [`${front.url}/docker.io`] }], tagTtl: '1h' })
    const dest = join(work, 'pulled-chained')
    await skopeoCopy(`docker://${new URL(outer.url).host}/e2e/app:v1`, `dir:${dest}`, { preserveDigests: true })
    const pulled = await readPulledDir(dest)
    t.equal(pulled.manifestDigest, app.digest, 'the tag resolves to the pushed manifest')
    t.same(pulled.corrupt, [], 'every blob hashes to its name')
    t.same(pulled.blobDigests, [...app.blobDigests].sort(), 'exactly the source blobs')
    const paths = front.requests().map((r) => r.path)
    t.ok(paths.length > 0, 'the outer mirror went through the inner one')
    t.same(
      paths.filter((p) => !p.startsWith('/v2/docker.io/e2e/app/')),
      [],
      'every request names the registry as the first name component',
    )
  })
}
