/**
 * The TLS listener and client authentication with real clients: curl over HTTP/2 and HTTP/1.1, skopeo trusting the
 * site's CA (--src-cert-dir) with --src-creds, containerd's ctr with a hosts.toml `ca` and --user, the Docker daemon
 * with the CA in certs.d for the mirror's host:port after `docker login`, h2load with many streams over one
 * connection, and a certificate rotated while skopeo pulls. Upstream: a token-auth CNCF distribution standing in for
 * Docker Hub. Credentials come from a real `htpasswd -B` file.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { makeCa, makeServerCert } from '../helpers/certs.js'
import { runProgram } from '../helpers/child-program.js'
import { startContainerd, writeHostsToml } from '../helpers/containerd.js'
import { startDistribution } from '../helpers/distribution.js'
import { startDockerd } from '../helpers/dockerd.js'
import { startMirror } from '../helpers/mirror.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { requirePrograms } from '../helpers/programs.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { sleep } from '../helpers/sleep.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { readPulledOciLayout } from '../helpers/verify.js'

const PROGRAMS = ['docker-registry', 'skopeo', 'containerd', 'ctr', 'dockerd', 'docker', 'openssl', 'curl', 'h2load', 'htpasswd']

if (requirePrograms(t, PROGRAMS)) {
  t.test('TLS and credentials with curl, skopeo, ctr, the Docker daemon and h2load', async (t) => {
    const work = await makeTempDir('tls')
    t.teardown(() => removeTempDir(work))
    const ca = await makeCa(work)
    const server = await makeServerCert(ca, 'mirror')
    const certFile = join(work, 'tls.crt')
    const keyFile = join(work, 'tls.key')
    await copyFile(server.cert, certFile)
    await copyFile(server.key, keyFile)
    const htpasswd = join(work, 'htpasswd')
    await runProgram('htpasswd', ['-B', '-b', '-c', htpasswd, 'alice', 'alice-pw'])

    const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const app = await buildOciLayout(join(work, 'app'), { tag: 'v1', layerSizes: [2 * 1024 * 1024, 512 * 1024] })
    await pushLayout(app.layoutDir, 'v1', hub.hostPort, 'library/e2etls', { destCreds: 'pusher:secret' })
    // A slow upstream, to keep a pull running while the certificate rotates.
    const slow = await startDistribution({ auth: 'none', linkBytesPerSecond: 2 * 1024 * 1024, t })
    const big = await buildOciLayout(join(work, 'big'), { tag: 'v1', layerSizes: [6 * 1024 * 1024] })
    await pushLayout(big.layoutDir, 'v1', slow.hostPort, 'team/big')
    const mirror = await startMirror(t, {
      upstreams: [
        { name: 'docker.io', url: hub.url },
        { name: 'slow.example', url: slow.url },
      ],
      tagTtl: '1h',
      server: { reloadInterval: '200ms', tls: { cert: certFile, key: keyFile, listen: '127.0.0.1:0' } },
      auth: { htpasswd },
    })
    const tlsUrl = mirror.tlsUrl!
    const hostPort = new URL(tlsUrl).host

    // curl: HTTP/2 and HTTP/1.1 on the same port; no credentials, no entry.
    const curl = async (args: string[]) =>
      (await runProgram('curl', ['-s', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', '--cacert', ca.caCert, ...args])).stdout
    t.equal(await curl(['--http2', '-u', 'alice:alice-pw', `${tlsUrl}/v2/`]), '2 200', 'curl over HTTP/2')
    t.equal(await curl(['--http1.1', '-u', 'alice:alice-pw', `${tlsUrl}/v2/`]), '1.1 200', 'curl over HTTP/1.1')
    t.equal(await curl(['--http2', `${tlsUrl}/v2/`]), '2 401', 'no credentials: 401')

    // skopeo: the site's CA in a cert dir, credentials on the command line.
    const certDir = join(work, 'certs.d')
    await mkdir(certDir)
    await copyFile(ca.caCert, join(certDir, 'ca.crt'))
    const dest = join(work, 'pulled')
    await t.rejects(skopeoCopy(`docker://${hostPort}/library/e2etls:v1`, `oci:${dest}:v1`, { certDir }), /unauthorized|authentication/i)
    await skopeoCopy(`docker://${hostPort}/library/e2etls:v1`, `oci:${dest}:v1`, {
      certDir,
      srcCreds: 'alice:alice-pw',
      preserveDigests: true,
    })
    const pulled = await readPulledOciLayout(dest)
    t.same(pulled.corrupt, [], 'skopeo verified every blob')
    t.ok(
      app.layerDigests.every((d) => pulled.blobDigests.includes(d)),
      'and has every layer',
    )
    t.equal(pulled.topDigest, app.digest, 'and the manifest the upstream has')

    // ctr: hosts.toml with the CA, --user for the credentials.
    const hostsDir = join(work, 'hosts.d')
    await writeHostsToml(hostsDir, 'docker.io', tlsUrl, { server: null, ca: ca.caCert })
    const ctrd = await startContainerd({ t })
    await ctrd.ctr(['content', 'fetch', '--user', 'alice:alice-pw', 'docker.io/library/e2etls:v1'], { hostsDir })
    const content = (await ctrd.ctr(['content', 'ls', '-q'])).stdout
    for (const d of [app.digest, ...app.layerDigests]) t.match(content, d, `containerd has ${d.slice(0, 19)}`)

    // The Docker daemon: the CA in certs.d/<host:port>/, then docker login.
    const dockerCerts = join('/etc/docker/certs.d', hostPort)
    await mkdir(dockerCerts, { recursive: true })
    t.teardown(() => rm(dockerCerts, { recursive: true, force: true }))
    await copyFile(ca.caCert, join(dockerCerts, 'ca.crt'))
    const daemon = await startDockerd({ t, daemonJson: {} })
    // Without credentials: refused (Docker then also tries plain http on a 127.0.0.1 registry, which fails too).
    await t.rejects(daemon.docker(['pull', `${hostPort}/library/e2etls:v1`]))
    t.ok(
      mirror.logs.some((l) => l.includes('"path":"/v2/"') && l.includes('"status":401')),
      'the daemon was asked for credentials',
    )
    await daemon.docker(['login', hostPort, '-u', 'alice', '-p', 'alice-pw'])
    await daemon.docker(['pull', `${hostPort}/library/e2etls:v1`])
    const id = (await daemon.docker(['image', 'inspect', '--format', '{{.Id}}', `${hostPort}/library/e2etls:v1`])).stdout.trim()
    t.equal(id, app.configDigests[0], 'docker pulled the image over TLS with the login')

    // h2load: many streams over one connection, for a tag and for a cached layer.
    const auth = `authorization: Basic ${Buffer.from('alice:alice-pw').toString('base64')}`
    const h2 = async (path: string, n: number, streams: number) =>
      (
        await runProgram('h2load', [
          '-n',
          String(n),
          '-c',
          '1',
          '-m',
          String(streams),
          '-H',
          auth,
          '-H',
          'accept: application/vnd.oci.image.manifest.v1+json',
          `${tlsUrl}${path}`,
        ])
      ).stdout
    const tagRun = await h2('/v2/library/e2etls/manifests/v1', 400, 50)
    t.match(tagRun, /requests: 400 total, 400 started, 400 done, 400 succeeded/, 'h2load: 400 tag requests over one connection')
    t.match(tagRun, /status codes: 400 2xx/)
    t.match(tagRun, /Application protocol: h2/)
    const layerRun = await h2(`/v2/library/e2etls/blobs/${app.layerDigests[0]}`, 32, 8)
    t.match(layerRun, /requests: 32 total, 32 started, 32 done, 32 succeeded/, 'h2load: 8 streams of a 2 MiB layer at once')

    // Rotation while a pull runs: the slow upstream keeps skopeo busy while the files change.
    const rotated = await makeServerCert(ca, 'rotated')
    const pull = skopeoCopy(`docker://${hostPort}/slow.example/team/big:v1`, `oci:${join(work, 'big-pulled')}:v1`, {
      certDir,
      srcCreds: 'alice:alice-pw',
      preserveDigests: true,
    }).catch((err: unknown) => err as Error)
    await sleep(1000)
    await copyFile(rotated.key, keyFile)
    await copyFile(rotated.cert, certFile)
    for (let i = 0; i < 100 && !mirror.logs.some((l) => l.includes('TLS certificate reloaded')); i++) await sleep(50)
    t.ok(
      mirror.logs.some((l) => l.includes('TLS certificate reloaded')),
      'the new pair was loaded while the pull ran',
    )
    const result = await pull
    t.notOk(result instanceof Error, `the pull completed across the rotation ${result instanceof Error ? result.message : ''}`)
    const bigPulled = await readPulledOciLayout(join(work, 'big-pulled'))
    t.same(bigPulled.corrupt, [], 'verified')
    const served = (await runProgram('openssl', ['s_client', '-connect', hostPort, '-CAfile', ca.caCert], { input: '' })).stdout
    t.match(served, /subject=CN\s*=\s*rotated/, 'new connections get the new certificate')
  })
}
