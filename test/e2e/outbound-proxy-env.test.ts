/**
 * HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment, as Go programs read them, with a real squid:
 * - an HTTPS upstream named `registry.proxied.test`, a name only squid can resolve (its own hosts file), whose
 *   front lets in only squid's outgoing address: pulled through the environment's proxy;
 * - an HTTP upstream on this machine's non-loopback address, in NO_PROXY as a CIDR: pulled direct, though
 *   HTTP_PROXY is set, and through squid when its upstream entry names the proxy itself;
 * - an upstream on loopback: never proxied;
 * - `proxy: none`: direct despite HTTPS_PROXY.
 */
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import t from 'tap'
import { makeCa, makeServerCert } from '../helpers/certs.js'
import { startDistribution } from '../helpers/distribution.js'
import { nonLoopbackIPv4 } from '../helpers/local-address.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { requirePrograms } from '../helpers/programs.js'
import { startSquid } from '../helpers/proxies.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { sleep } from '../helpers/sleep.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { readPulledOciLayout } from '../helpers/verify.js'

const PROXY_SIDE = '127.0.0.2'
const localIp = nonLoopbackIPv4()

if (requirePrograms(t, ['docker-registry', 'skopeo', 'openssl', 'squid'])) {
  t.test(
    'the environment proxies, NO_PROXY, loopback and `proxy: none`',
    { skip: localIp ? false : 'no non-loopback IPv4 address' },
    async (t) => {
      const ip = localIp!
      const work = await makeTempDir('proxy-env')
      t.teardown(() => removeTempDir(work))
      const ca = await makeCa(work)
      const secure = await startDistribution({
        front: { onlyFrom: PROXY_SIDE, tls: await makeServerCert(ca, 'proxied', ['registry.proxied.test']) },
        t,
      })
      const plain = await startDistribution({ front: { host: ip }, t })
      const image = await buildOciLayout(join(work, 'image'), { tag: 'v1', layerSizes: [200 * 1024] })
      for (const d of [secure, plain]) await pushLayout(image.layoutDir, 'v1', new URL(d.directUrl).host, 'team/app')
      const squid = await startSquid({ outgoing: PROXY_SIDE, hosts: { 'registry.proxied.test': '127.0.0.1' }, t })
      const securePort = new URL(secure.url).port
      const plainPort = new URL(plain.url).port

      const file = join(work, 'regmirror.yaml')
      await writeFile(
        file,
        JSON.stringify({
          wellKnownUpstreams: false,
          defaultUpstream: 'registry.proxied.test',
          dataDir: join(work, 'data'),
          retries: { attempts: 1 },
          upstreams: [
            { name: 'registry.proxied.test', url: `https://registry.proxied.test:${securePort}` },
            { name: 'registry.noproxy', url: plain.url },
            { name: 'registry.viaproxy', url: plain.url, proxy: squid.url },
            { name: 'registry.loopback', url: secure.directUrl },
            { name: 'registry.none', url: `https://registry.proxied.test:${securePort}`, proxy: 'none' },
          ],
        }),
      )
      const mirror = await startMirrorProcess([], {
        REGMIRROR_CONFIG: file,
        NODE_EXTRA_CA_CERTS: ca.caCert,
        // One in lower case, as many sites write them; the upper-case forms of the others cleared.
        https_proxy: squid.url,
        HTTPS_PROXY: '',
        HTTP_PROXY: squid.url,
        http_proxy: '',
        NO_PROXY: `example.invalid, ${ip.replace(/\.\d+$/, '.0')}/24`,
        no_proxy: '',
      })
      t.teardown(() => mirror.program.stop())
      const host = new URL(mirror.url).host

      const pull = async (name: string) => {
        const dest = join(work, `pulled-${name}`)
        await skopeoCopy(`docker://${host}/${name}/team/app:v1`, `oci:${dest}:v1`, { preserveDigests: true })
        const pulled = await readPulledOciLayout(dest)
        t.equal(pulled.topDigest, image.digest, `${name}: pulled and verified`)
        t.same(pulled.corrupt, [])
      }

      await pull('registry.proxied.test')
      t.ok(secure.requests().length > 0, 'the HTTPS upstream answered')
      t.same([...new Set(secure.requests().map((r) => r.from))], [PROXY_SIDE], 'through squid only (HTTPS_PROXY)')
      t.same(secure.refused(), [])

      await pull('registry.noproxy')
      t.same([...new Set(plain.requests().map((r) => r.from))], [ip], 'NO_PROXY (a CIDR): direct, though HTTP_PROXY is set')

      const before = plain.requests().length
      await pull('registry.viaproxy')
      const later = plain.requests().slice(before)
      t.ok(later.length > 0)
      t.same([...new Set(later.map((r) => r.from))], [PROXY_SIDE], "an upstream's own proxy wins over NO_PROXY")

      await pull('registry.loopback')

      const none = await fetch(`${mirror.url}/v2/registry.none/team/app/manifests/v1`)
      const text = await none.text()
      t.equal(none.status, 502, '`proxy: none` dials the name itself, which only squid can resolve')
      t.notMatch(text, 'proxy http', 'no proxy was involved')

      await mirror.program.stop()
      // squid logs a request when it ends, a tunnel when it closes.
      const proxied = new RegExp(`CONNECT registry\\.proxied\\.test:${securePort} `)
      for (let i = 0; i < 50 && !proxied.test(await squid.log()); i++) await sleep(100)
      const log = await squid.log()
      t.match(log, proxied, "squid's log has the tunnel to the HTTPS upstream")
      t.match(
        log,
        new RegExp(`GET http://${ip.replace(/\./g, '\\.')}:${plainPort}/v2/team/app/`),
        'and the forwarded GETs of registry.viaproxy',
      )
      t.notMatch(log, new RegExp(`:${new URL(secure.directUrl).port}/`), 'but nothing for the loopback upstream')
      t.ok(
        mirror.logs().some((l) => l.includes('"outbound proxies from the environment"') && l.includes(squid.url)),
        'the environment proxies are logged at start',
      )
    },
  )
}
