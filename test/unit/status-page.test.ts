import { createHash } from 'node:crypto'
import t from 'tap'
import { RegmirrorError } from '../../src/errors.js'
import { PullActivity, imageSize } from '../../src/status/activity.js'
import { UpstreamIncidents } from '../../src/upstream/incidents.js'
import { PAGE_CSP, PAGE_SCRIPT, PAGE_STYLE } from '../../src/status/page-assets.js'
import { esc, renderPage } from '../../src/status/page.js'
import type { StatusSnapshot } from '../../src/status/report.js'

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const D = (c: string) => `sha256:${c.repeat(64)}`

function image(config: number, layers: number[]): { mediaType: string; body: Buffer } {
  const desc = (size: number, i: number) => ({ mediaType: 'application/octet-stream', digest: D(String(i % 10)), size })
  const doc = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(config, 0), layers: layers.map(desc) }
  return { mediaType: OCI_MANIFEST, body: Buffer.from(JSON.stringify(doc)) }
}

function index(children: { digest: string; arch: string }[]): { mediaType: string; body: Buffer } {
  const manifests = children.map((c) => ({
    mediaType: OCI_MANIFEST,
    digest: c.digest,
    size: 500,
    platform: { os: 'linux', architecture: c.arch },
  }))
  return { mediaType: OCI_INDEX, body: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests })) }
}

function snapshot(over: Partial<StatusSnapshot> = {}): StatusSnapshot {
  const now = '2026-01-01T12:00:00.000Z'
  return {
    version: '1.2.3',
    state: 'ready',
    now,
    startedAt: now,
    uptimeSeconds: 3700,
    upstreams: [],
    cache: {
      usedBytes: 0,
      maxBytes: 1024,
      pinnedBytes: 0,
      entries: 0,
      hits: 0,
      misses: 0,
      hitRatio: null,
      servedFromCacheBytes: 0,
      servedFromUpstreamBytes: 0,
      fetchedBytes: 0,
      savedBytes: 0,
    },
    downloads: [],
    recentPulls: [],
    topRepositories: [],
    pins: [],
    ...over,
  }
}

t.test('an index then its child is one pull, sized and with the platform of the child', async (t) => {
  const a = new PullActivity()
  a.manifestServed('docker.io', 'library/alpine', '3.20', { digest: D('a'), ...index([{ digest: D('b'), arch: 'arm64' }]) })
  t.equal(a.recentPulls()[0]?.size, undefined, 'an index alone says nothing of the size pulled')
  a.manifestServed('docker.io', 'library/alpine', undefined, { digest: D('b'), ...image(100, [1000, 2000]) })
  const pulls = a.recentPulls()
  t.equal(pulls.length, 1, 'the child is part of the same pull')
  t.match(pulls[0], {
    upstream: 'docker.io',
    repository: 'library/alpine',
    tag: '3.20',
    digest: D('a'),
    size: 3100,
    platform: 'linux/arm64',
  })
  t.same(
    a.topRepositories(10).map((r) => [r.repository, r.pulls]),
    [['library/alpine', 1]],
  )
})

t.test('containerd asks for the tag, then the same digest: one pull; the same image half a minute later is another', async (t) => {
  let now = 1_000_000
  const a = new PullActivity(() => now)
  const img = { digest: D('c'), ...image(10, [20]) }
  a.manifestServed('ghcr.io', 'owner/app', '1.0', img)
  a.manifestServed('ghcr.io', 'owner/app', undefined, img)
  t.equal(a.recentPulls().length, 1)
  t.equal(a.topRepositories(1)[0]?.pulls, 1)
  now += 31_000
  a.manifestServed('ghcr.io', 'owner/app', '1.0', img)
  t.equal(a.recentPulls().length, 2, 'a second pull')
  t.equal(a.topRepositories(1)[0]?.pulls, 2)
  a.manifestServed('ghcr.io', 'owner/app', 'latest', img)
  t.equal(a.recentPulls()[0]?.tag, 'latest', 'another tag of the same image is another pull')
})

t.test('memory is bounded: the last 25 pulls, and at most 1000 repositories (the least pulled go)', async (t) => {
  let now = 0
  const a = new PullActivity(() => now)
  const img = image(1, [1])
  for (let i = 0; i < 5; i++) a.manifestServed('docker.io', 'popular/one', `t${i}`, { digest: D('e'), ...img })
  for (let i = 0; i < 1200; i++) {
    now += 1
    a.manifestServed('docker.io', `r/n${i}`, 'x', { digest: D('f'), ...img })
  }
  t.equal(a.recentPulls().length, 25)
  t.equal(a.recentPulls()[0]?.repository, 'r/n1199', 'newest first')
  const top = a.topRepositories(2000)
  t.equal(top.length, 1000)
  t.equal(top[0]?.repository, 'popular/one', 'the most pulled stays')
  t.equal(top[0]?.pulls, 5)
})

t.test('imageSize: config and layers of an image manifest; nothing for an index or a broken body', async (t) => {
  t.equal(imageSize(OCI_MANIFEST, image(5, [7, 11]).body), 23)
  t.equal(imageSize(OCI_INDEX, index([]).body), undefined)
  t.equal(imageSize(OCI_MANIFEST, Buffer.from('{"config":{"size":-1},"layers":[]}')), undefined)
  t.equal(imageSize(OCI_MANIFEST, Buffer.from('not json')), undefined)
})

t.test('everything from clients and upstreams is escaped in the page', async (t) => {
  const hostile = '<img src=x onerror=alert(1)>"\'&'
  const at = '2026-01-01T11:59:00.000Z'
  const html = renderPage(
    snapshot({
      upstreams: [
        {
          name: hostile,
          host: hostile,
          online: false,
          offlineByConfig: false,
          ratelimitRemaining: 3,
          lastError: { code: 'UPSTREAM_MANIFEST_INVALID', message: hostile, at },
        },
      ],
      recentPulls: [{ upstream: 'docker.io', repository: `${hostile}/x`, tag: hostile, digest: hostile, platform: hostile, at }],
      topRepositories: [{ upstream: 'docker.io', repository: hostile, pulls: 2, lastAt: at }],
      downloads: [
        { digest: hostile, upstream: hostile, repository: hostile, size: 10, received: 5, bytesPerSecond: 1, clients: 1, startedAt: at },
      ],
      pins: [{ ref: hostile, origin: 'data', cached: 0, bytes: 0, root: hostile }],
    }),
  )
  t.notMatch(html, '<img', 'no element injected')
  t.notMatch(html, /onerror=alert\(1\)>"'/, 'no attribute broken out of')
  t.match(html, '&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;')
  t.equal(esc('a<b>&"\''), 'a&lt;b&gt;&amp;&quot;&#39;')
})

t.test('the page reads without JavaScript: every section, the uptime, the empty states', async (t) => {
  const html = renderPage(snapshot())
  for (const h of ['Cache', 'Upstreams', 'Downloads in progress', 'Recently pulled', 'Most pulled repositories', 'Pins']) {
    t.match(html, `<h2>${h}</h2>`)
  }
  t.match(html, 'version 1.2.3 · up 1 h 1 min · ready')
  t.match(html, 'Nothing is being downloaded.')
})

t.test('the Content-Security-Policy allows exactly the inline style and script, by hash', async (t) => {
  const html = renderPage(snapshot())
  const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1]
  const style = /<style>([\s\S]*)<\/style>/.exec(html)?.[1]
  const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`
  t.equal(script, PAGE_SCRIPT)
  t.equal(style, PAGE_STYLE)
  t.match(PAGE_CSP, `script-src ${hash(script as string)};`)
  t.match(PAGE_CSP, `style-src ${hash(style as string)};`)
  t.match(PAGE_CSP, "default-src 'none'")
  t.notMatch(PAGE_CSP, 'unsafe')
  t.doesNotThrow(() => new Function(PAGE_SCRIPT), 'the script parses')
  t.notMatch(PAGE_SCRIPT, 'innerHTML', 'the script builds the page from text nodes only')
})

t.test("an upstream's last error keeps only our own code and message", async (t) => {
  const i = new UpstreamIncidents()
  t.equal(i.lastOf('docker.io'), undefined)
  const cause = new Error('connect ECONNREFUSED 10.0.0.5:443 Authorization: Bearer abc.def')
  i.note('docker.io', new RegmirrorError('UPSTREAM_TIMEOUT', 'upstream docker.io timed out', { cause }), 1000)
  t.same(i.lastOf('docker.io'), { code: 'UPSTREAM_TIMEOUT', message: 'upstream docker.io timed out', at: 1000 })
  i.note('docker.io', cause, 2000)
  t.same(
    i.lastOf('docker.io'),
    { code: 'UPSTREAM_ERROR', message: 'upstream docker.io failed', at: 2000 },
    'a foreign error: no text of it',
  )
  i.note('docker.io', new RegmirrorError('INTERNAL', 'a bug with details'), 3000)
  t.equal(i.lastOf('docker.io')?.message, 'upstream docker.io failed', 'internal errors say nothing, as on the wire')
  i.noteStatus('ghcr.io', 429, 4000)
  t.same(i.lastOf('ghcr.io'), { code: 'TOOMANYREQUESTS', message: 'upstream ghcr.io answered 429', at: 4000 })
  i.note('quay.io', new RegmirrorError('UPSTREAM_MANIFEST_INVALID', 'x'.repeat(5000)))
  t.equal(i.lastOf('quay.io')?.message.length, 300, 'bounded')
})
