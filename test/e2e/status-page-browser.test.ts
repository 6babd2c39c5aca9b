/**
 * The status page in a real browser: headless Chromium (Debian's `chromium`) driven by playwright-core. skopeo
 * pulls an image from a CNCF distribution through the mirror and the page shows it, with no console error (a
 * Content-Security-Policy violation would be one); a blob from a gated upstream is held half-way and the page,
 * refreshed by its own script from /api/status, shows the download and its progress bar; a hostile media type from an
 * upstream shows as text in both renderings; at a phone's width nothing scrolls sideways; without JavaScript the page
 * reads the same. Screenshots are kept in test-artifacts/ (gitignored).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core'
import { startDistribution } from '../helpers/distribution.js'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { startGatedUpstream } from '../helpers/gated-upstream.js'
import { get, pausedGet, startMirror } from '../helpers/mirror.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { findProgram, requirePrograms } from '../helpers/programs.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
const HOSTILE = '<img src=x onerror=alert(1)>'
// The page's script refreshes every 5 s; generous, for a loaded CI machine (the page is not timed, only awaited).
const REFRESHED_WITHIN = 60_000

/** A page that records every console error and uncaught exception. */
async function open(browser: Browser, url: string, errors: string[], opts: BrowserContextOptions = {}): Promise<Page> {
  const context = await browser.newContext(opts)
  context.setDefaultTimeout(REFRESHED_WITHIN)
  const page = await context.newPage()
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${m.text()} (${m.location().url})`)
  })
  page.on('pageerror', (e) => errors.push(e.message))
  page.on('dialog', (d) => {
    errors.push(`a dialog opened: ${d.message()}`)
    void d.dismiss()
  })
  const res = await page.goto(url)
  if (res?.status() !== 200) throw new Error(`${url} answered ${res?.status()}`)
  return page
}

/** No sideways scrolling: the document is no wider than the viewport. */
const fitsWidth = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)

if (requirePrograms(t, ['chromium', 'docker-registry', 'skopeo'])) {
  t.test('the status page in Chromium: a pull, a download in progress, a phone, no JavaScript', async (t) => {
    const work = await makeTempDir('status-page')
    t.teardown(() => removeTempDir(work))
    const registry = await startDistribution({ auth: 'none', t })
    const image = await buildOciLayout(join(work, 'alpine'), { tag: '3.20', layerSizes: [300 * 1024, 40 * 1024] })
    await pushLayout(image.layoutDir, '3.20', registry.hostPort, 'library/alpine')
    const big = Buffer.alloc(3 * 1024 * 1024, 'regmirror')
    const gated = await startGatedUpstream(big)
    t.teardown(() => gated.stop())
    const evil = await startFakeRegistry()
    t.teardown(() => evil.close())
    const hostileBody = JSON.stringify({ schemaVersion: 2, mediaType: HOSTILE, manifests: [] })
    evil.fault({ kind: 'reply', status: 200, headers: { 'content-type': 'application/json' }, body: hostileBody })
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: registry.url },
        { name: 'slow.example', url: gated.url },
        { name: 'evil.example', url: evil.url },
      ],
    })
    const host = new URL(mirror.url).host

    await skopeoCopy(`docker://${host}/library/alpine:3.20`, `oci:${join(work, 'pulled')}:3.20`)
    t.equal((await get(`${mirror.url}/v2/evil.example/team/app/manifests/1`)).status, 502, 'the hostile answer is refused')

    // A name no client can send (the router's grammar refuses it) but the page must show as text if one ever got in.
    const index = { mediaType: 'application/vnd.oci.image.index.v1+json', body: Buffer.from('{"schemaVersion":2,"manifests":[]}') }
    mirror.app.services.activity.manifestServed('evil.example', `x/<b>${HOSTILE}</b>`, 'latest', {
      digest: `sha256:${'e'.repeat(64)}`,
      ...index,
    })

    const browser = await chromium.launch({ executablePath: findProgram('chromium'), args: ['--no-sandbox'], headless: true })
    t.teardown(() => browser.close())
    const errors: string[] = []
    await mkdir(ARTIFACTS, { recursive: true })

    // Desktop, with JavaScript.
    const page = await open(browser, `${mirror.url}/`, errors, { viewport: { width: 1280, height: 900 } })
    const main = page.locator('main')
    const pulled = page.locator('section', { has: page.locator('h2', { hasText: 'Recently pulled' }) })
    t.match(await pulled.innerText(), 'docker.io/library/alpine:3.20', 'the image just pulled')
    t.match(await pulled.innerText(), image.digest.slice(7, 19), 'with its digest')
    t.match(await pulled.innerText(), /\d+(\.\d)? KiB/, 'and its size')
    t.match(await main.innerText(), HOSTILE, "the upstream's hostile text shows as text")
    t.equal(await page.locator('main img, main b').count(), 0, 'and makes no element')
    t.match(await pulled.innerText(), `evil.example/x/<b>${HOSTILE}</b>:latest`, 'a hostile repository name is text too')

    const download = pausedGet(`${mirror.url}/v2/slow.example/team/big/blobs/${sha256(big)}`)
    await gated.waiting()
    const downloads = page.locator('section', { has: page.locator('h2', { hasText: 'Downloads in progress' }) })
    const bar = downloads.locator('progress')
    // No reload: the page's script brings the download in.
    await bar.waitFor({ timeout: REFRESHED_WITHIN })
    t.equal(Number(await bar.getAttribute('max')), big.length, 'the bar runs to the blob size')
    const value = Number(await bar.getAttribute('value'))
    t.ok(value >= gated.half && value < big.length, `the bar stands half-way (${value} of ${big.length})`)
    t.match(await downloads.innerText(), 'slow.example/team/big')
    t.match(await downloads.innerText(), /\(\d+ %\)/)
    t.match(await main.innerText(), HOSTILE, 'still text after the script rendered the page again')
    t.match(await pulled.innerText(), `x/<b>${HOSTILE}</b>`)
    t.equal(await page.locator('main img, main b').count(), 0)
    const desktopShot = join(ARTIFACTS, 'status-page.png')
    await page.screenshot({ path: desktopShot, fullPage: true })
    t.comment(`screenshot: ${desktopShot}`)

    // A phone, with the download still in progress and the longest names on the page.
    const phone = await open(browser, `${mirror.url}/`, errors, {
      viewport: { width: 375, height: 812 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    })
    t.ok(await fitsWidth(phone), 'at 375 px nothing scrolls sideways (as rendered by the server)')
    const before = await phone.locator('#refreshed').innerText()
    await phone.waitForFunction((b) => document.getElementById('refreshed')?.textContent !== b, before, { timeout: REFRESHED_WITHIN })
    t.ok(await fitsWidth(phone), '... and as rendered again by the script')
    const phoneShot = join(ARTIFACTS, 'status-page-phone.png')
    await phone.screenshot({ path: phoneShot, fullPage: true })
    t.comment(`screenshot: ${phoneShot}`)

    // Without JavaScript: the server's page alone.
    const plain = await open(browser, `${mirror.url}/`, errors, { javaScriptEnabled: false })
    const text = await plain.locator('main').innerText()
    t.match(text, 'docker.io/library/alpine:3.20', 'readable without JavaScript: the pull')
    t.match(text, 'slow.example/team/big', '... the download')
    t.equal(await plain.locator('main progress').count(), 1)
    t.equal(await plain.locator('main img, main b').count(), 0)
    // The script's rendering (the desktop page, refreshed) and the server's say the same, numbers aside.
    const figures = (s: string) => s.replace(/\d+(\.\d+)?( (B|KiB|MiB|GiB|TiB)(\/s)?| s| min| h| %)?/g, '#')
    t.equal(figures(await main.innerText()), figures(text), 'the script renders what the server renders')

    gated.open()
    const got = await (await download).body()
    t.equal(sha256(got), sha256(big), 'the held client got the whole blob')
    await downloads.getByText('Nothing is being downloaded.').waitFor({ timeout: REFRESHED_WITHIN })
    t.pass('the finished download leaves the page on the next refresh')
    t.same(errors, [], 'no console error, no uncaught exception, no dialog, in any of the pages')
  })
}
