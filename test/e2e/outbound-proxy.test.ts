/**
 * Pulls through real forward proxies, each upstream's `proxy` setting: squid with basic auth (an HTTPS upstream
 * through CONNECT), tinyproxy with BasicAuth (a plain-HTTP upstream, forwarded) and dante (SOCKS5, an HTTPS
 * upstream). Every upstream is a CNCF distribution whose front lets in only the proxy's outgoing address
 * (127.0.0.2): a pull that completes went through the proxy, and the proxy's own log shows it. The proxy's
 * password appears in no log line of the mirror and not in `config check`; a wrong password, a proxy that is not
 * there and a refused CONNECT are clear errors, counted against the upstream's health.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test as TapTest } from 'tap'
import { makeCa, makeServerCert } from '../helpers/certs.js'
import { runProgram } from '../helpers/child-program.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { freePort } from '../helpers/free-port.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { buildOciLayout, type OciLayout } from '../helpers/oci-image.js'
import { requirePrograms } from '../helpers/programs.js'
import { sleep } from '../helpers/sleep.js'
import { startDante, startSquid, startTinyproxy } from '../helpers/proxies.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
type TestContext = TapTest
import { readPulledOciLayout } from '../helpers/verify.js'

const PROXY_SIDE = '127.0.0.2'

/** An upstream only the proxy can reach, holding `app:v1`; with `token`, behind a token server (anonymous pulls). */
async function upstream(
  t: TestContext,
  work: string,
  opts: { tls?: { cert: string; key: string }; token?: boolean } = {},
): Promise<{ dist: Distribution; image: OciLayout }> {
  const dist = await startDistribution({
    front: { onlyFrom: PROXY_SIDE, ...(opts.tls ? { tls: opts.tls } : {}) },
    ...(opts.token ? { auth: 'token' as const, tokenServer: { users: { pusher: 'push-pw' } } } : {}),
    t,
  })
  const image = await buildOciLayout(join(work, `image-${Math.random().toString(16).slice(2)}`), {
    tag: 'v1',
    layerSizes: [300 * 1024, 40 * 1024],
  })
  await pushLayout(image.layoutDir, 'v1', new URL(dist.directUrl).host, 'team/app', opts.token ? { destCreds: 'pusher:push-pw' } : {})
  return { dist, image }
}

/** `regmirror serve` with this config file and environment. */
async function mirrorWith(t: TestContext, work: string, config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  const file = join(work, 'regmirror.yaml')
  await writeFile(
    file,
    JSON.stringify({ wellKnownUpstreams: false, defaultUpstream: 'registry.internal', dataDir: join(work, 'data'), ...config }),
  )
  const mirror = await startMirrorProcess([], { REGMIRROR_CONFIG: file, REGMIRROR_LOG_LEVEL: 'debug', ...env })
  t.teardown(() => mirror.program.stop())
  return { ...mirror, file }
}

async function pullAndVerify(t: TestContext, work: string, mirrorUrl: string, upstreamName: string, image: OciLayout) {
  const dest = join(work, `pulled-${upstreamName}`)
  await skopeoCopy(`docker://${new URL(mirrorUrl).host}/${upstreamName}/team/app:v1`, `oci:${dest}:v1`, { preserveDigests: true })
  const pulled = await readPulledOciLayout(dest)
  t.equal(pulled.topDigest, image.digest, `${upstreamName}: the image pulled through the mirror`)
  t.same(pulled.corrupt, [], 'every blob verified')
}

function onlyThroughProxy(t: TestContext, dist: Distribution) {
  const from = new Set(dist.requests().map((r) => r.from))
  t.ok(dist.requests().length > 0, `the upstream answered ${dist.requests().length} requests`)
  t.same([...from], [PROXY_SIDE], 'every one came from the proxy')
  t.same(dist.refused(), [], 'nothing tried to reach it another way')
}

if (requirePrograms(t, ['docker-registry', 'skopeo', 'openssl', 'squid', 'tinyproxy', 'danted', 'htpasswd'])) {
  t.test('squid with basic auth: an HTTPS upstream through CONNECT; wrong password, no proxy, refused CONNECT', async (t) => {
    const work = await makeTempDir('proxy-squid')
    t.teardown(() => removeTempDir(work))
    const ca = await makeCa(work)
    const { dist, image } = await upstream(t, work, { tls: await makeServerCert(ca, 'upstream') })
    const password = 'pr0xy-s3cret-squid'
    const squid = await startSquid({ users: { mirror: password }, outgoing: PROXY_SIDE, denyConnectPorts: [9], t })
    const withAuth = (user: string, pw: string) => squid.url.replace('http://', `http://${user}:${pw}@`)
    const closedPort = await freePort()
    const mirror = await mirrorWith(
      t,
      work,
      {
        retries: { attempts: 1 },
        offline: { failureThreshold: 2, coolDown: '1m' },
        // Upstream health is each worker's own: two refusals make one worker mark it offline only when both reach it.
        server: { workers: 1 },
        upstreams: [
          { name: 'registry.internal', url: dist.url, proxy: withAuth('mirror', password) },
          { name: 'registry.wrongpw', url: dist.url, proxy: withAuth('mirror', 'not-the-password') },
          // the same for a plain-HTTP request, which squid answers with its own 407
          { name: 'registry.plainwrong', url: dist.url.replace('https:', 'http:'), proxy: withAuth('mirror', 'not-the-password') },
          { name: 'registry.noproxy', url: dist.url, proxy: `http://mirror:${password}@127.0.0.1:${closedPort}` },
          // squid answers CONNECT to port 9 (nothing there) with its own refusal
          { name: 'registry.denied', url: 'https://127.0.0.1:9', proxy: withAuth('mirror', password) },
        ],
      },
      { NODE_EXTRA_CA_CERTS: ca.caCert },
    )

    await pullAndVerify(t, work, mirror.url, 'registry.internal', image)
    onlyThroughProxy(t, dist)

    const ask = async (name: string) => {
      const res = await fetch(`${mirror.url}/v2/${name}/team/app/manifests/v1`)
      return { status: res.status, text: await res.text() }
    }
    const wrong = await ask('registry.wrongpw')
    t.equal(wrong.status, 502)
    t.match(wrong.text, new RegExp(`proxy http://127\\.0\\.0\\.1:${squid.port} refused the credentials`))
    await ask('registry.wrongpw')
    const plainWrong = await ask('registry.plainwrong')
    t.equal(plainWrong.status, 502)
    t.match(
      plainWrong.text,
      new RegExp(`proxy http://127\\.0\\.0\\.1:${squid.port} refused the credentials`),
      'a 407 to a plain request too',
    )
    const unreachable = await ask('registry.noproxy')
    t.equal(unreachable.status, 502)
    t.match(unreachable.text, new RegExp(`proxy http://127\\.0\\.0\\.1:${closedPort} is unreachable`))
    const denied = await ask('registry.denied')
    t.equal(denied.status, 502)
    t.match(denied.text, /refused to open a tunnel to 127\.0\.0\.1:9 \(403\)/)
    for (const e of [wrong, plainWrong, unreachable, denied]) t.notMatch(e.text, password, 'no password in an error')

    const logs = mirror.logs()
    t.ok(
      logs.some((l) => l.includes('"upstream marked offline"') && l.includes('registry.wrongpw')),
      'two refusals of the proxy mark the upstream offline',
    )
    t.ok(
      logs.some((l) => l.includes('"upstream proxy"') && l.includes(`http://127.0.0.1:${squid.port}`)),
      'the proxy in use is logged',
    )
    const basic = Buffer.from(`mirror:${password}`).toString('base64')
    t.notOk(
      logs.some((l) => l.includes(password) || l.includes(basic)),
      `no password in ${logs.length} log lines`,
    )
    // squid logs a tunnel when it closes: the mirror's stop closes them.
    await mirror.program.stop()
    const tunnel = new RegExp(`CONNECT ${new URL(dist.url).host.replace(/\./g, '\\.')} mirror HIER_DIRECT`)
    for (let i = 0; i < 50 && !tunnel.test(await squid.log()); i++) await sleep(100)
    t.match(await squid.log(), tunnel, "squid's access log shows the mirror's tunnels, as user mirror")
    const check = await runProgram(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'config', 'check', '--config', mirror.file])
    t.notMatch(check.stdout, password, 'config check redacts it')
    t.match(check.stdout, `proxy: http://[REDACTED]:[REDACTED]@127.0.0.1:${squid.port}`)
  })

  t.test('tinyproxy with BasicAuth: a plain-HTTP upstream and its token realm, forwarded', async (t) => {
    const work = await makeTempDir('proxy-tinyproxy')
    t.teardown(() => removeTempDir(work))
    const { dist, image } = await upstream(t, work, { token: true })
    const password = 'tiny-s3cret'
    const tiny = await startTinyproxy({ users: { mirror: password }, outgoing: PROXY_SIDE, t })
    const mirror = await mirrorWith(t, work, {
      upstreams: [{ name: 'registry.internal', url: dist.url, proxy: tiny.url.replace('http://', `http://mirror:${password}@`) }],
    })
    await pullAndVerify(t, work, mirror.url, 'registry.internal', image)
    onlyThroughProxy(t, dist)
    const log = await tiny.log()
    t.match(
      log,
      new RegExp(`Request \\(file descriptor \\d+\\): GET ${dist.url.replace(/\./g, '\\.')}/v2/team/app/`),
      'tinyproxy forwarded the GETs',
    )
    t.notMatch(log, /CONNECT [\d.]+:\d+ HTTP/, 'as plain requests, not tunnels')
    t.match(log, new RegExp(`GET ${dist.tokenServer!.realm.replace(/\./g, '\\.')}\\?`), 'the token realm too')
    const logs = mirror.logs()
    t.notOk(
      logs.some((l) => l.includes(password)),
      `no password in ${logs.length} log lines`,
    )
  })

  t.test('dante: an HTTPS upstream through SOCKS5', async (t) => {
    const work = await makeTempDir('proxy-dante')
    t.teardown(() => removeTempDir(work))
    const ca = await makeCa(work)
    const { dist, image } = await upstream(t, work, { tls: await makeServerCert(ca, 'upstream') })
    const dante = await startDante({ outgoing: PROXY_SIDE, t })
    const mirror = await mirrorWith(
      t,
      work,
      { upstreams: [{ name: 'registry.internal', url: dist.url, proxy: dante.url }] },
      { NODE_EXTRA_CA_CERTS: ca.caCert },
    )
    await pullAndVerify(t, work, mirror.url, 'registry.internal', image)
    onlyThroughProxy(t, dist)
    const front = new URL(dist.url)
    t.match(
      await dante.log(),
      new RegExp(`tcp/connect .*${PROXY_SIDE.replace(/\./g, '\\.')}\\.\\d+ 127\\.0\\.0\\.1\\.${front.port}`),
      "dante's log shows the connections",
    )
  })
}
