/**
 * What `regmirror client-config` prints, fed to the real clients: containerd's hosts.toml files to `ctr`, the
 * registries.conf drop-in to skopeo (containers/image, as podman and CRI-O), each pulling a docker.io and a ghcr.io
 * image through the mirror from two CNCF distribution servers holding different content. Also containerd's
 * `override_path` mirrors, the Harbor/zot/Talos way (`[host."http://mirror/v2/docker.io"]`).
 *
 * One line of each generated file is changed: the fallback (`server` for containerd, the [[registry]] `location` for
 * containers/image) points at a closed port, so that had the mirror failed, no test would reach the real Docker Hub
 * or ghcr.io. Everything that makes the client use the mirror is as printed.
 */
import t from 'tap'
import type { Test } from 'tap'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { buildOciLayout, type OciLayout } from '../helpers/oci-image.js'
import { startDistribution, type Distribution } from '../helpers/distribution.js'
import { pushLayout, skopeoRun } from '../helpers/skopeo.js'
import { startContainerd, type Containerd } from '../helpers/containerd.js'
import { startMirror, type TestMirror } from '../helpers/mirror.js'
import { runCli } from '../helpers/cli.js'
import { splitPrinted } from '../helpers/client-files.js'
import { sha256 } from '../helpers/fake-registry/index.js'

const CLOSED = '127.0.0.1:9'

interface Logged {
  msg?: string
  path?: string
  upstream?: string
  status?: number
}

function requests(mirror: TestMirror): Logged[] {
  return mirror.logs.map((l) => JSON.parse(l) as Logged).filter((l) => l.msg === 'request' && l.path !== '/v2/')
}

if (requirePrograms(t, ['docker-registry', 'skopeo', 'containerd', 'ctr'])) {
  const work = await makeTempDir('client-config')
  t.teardown(() => removeTempDir(work))
  const hub = await startDistribution({ auth: 'none', t })
  const ghcr = await startDistribution({ auth: 'none', t })
  const hubImage = await buildOciLayout(join(work, 'hub'), { tag: 'v1', layerSizes: [256 * 1024, 1024] })
  const ghcrImage = await buildOciLayout(join(work, 'ghcr'), { tag: 'v1', layerSizes: [256 * 1024] })
  await pushLayout(hubImage.layoutDir, 'v1', hub.hostPort, 'library/app')
  await pushLayout(ghcrImage.layoutDir, 'v1', ghcr.hostPort, 'owner/app')
  const upstreams = [
    { name: 'docker.io', url: hub.url, libraryPrefix: true },
    { name: 'ghcr.io', url: ghcr.url },
  ]
  const mirror = await startMirror(t, { upstreams })
  // The same configuration, as the file an operator would give client-config.
  const configFile = join(work, 'regmirror.yaml')
  await writeFile(configFile, stringify({ wellKnownUpstreams: false, upstreams }))
  const clientConfig = async (flag: string): Promise<string> => {
    const r = await runCli(['client-config', '--config', configFile, flag, '--mirror', mirror.url])
    if (r.code !== 0) throw new Error(`client-config ${flag}: exit ${r.code}: ${r.stderr}`)
    return r.stdout
  }
  const images: [string, OciLayout, Distribution][] = [
    ['docker.io/library/app:v1', hubImage, hub],
    ['ghcr.io/owner/app:v1', ghcrImage, ghcr],
  ]

  /** ctr fetches both images through `hostsDir`; containerd checks every blob against its digest. */
  async function fetchBoth(t: Test, containerd: Containerd, hostsDir: string): Promise<void> {
    for (const [ref, image] of images) {
      await containerd.ctr(['content', 'fetch', ref], { hostsDir })
      const listed = (await containerd.ctr(['content', 'ls', '-q'])).stdout.split('\n')
      for (const d of [image.digest, ...image.blobDigests]) t.ok(listed.includes(d), `${ref}: containerd has ${d.slice(0, 19)}`)
    }
  }

  t.test('ctr with the hosts.toml files client-config prints', async (t) => {
    const printed = splitPrinted(await clientConfig('--containerd'))
    t.same(
      printed.map((f) => f.path),
      ['/etc/containerd/certs.d/docker.io/hosts.toml', '/etc/containerd/certs.d/ghcr.io/hosts.toml'],
    )
    const hostsDir = join(work, 'certs.d')
    for (const f of printed) {
      const lines = f.text.split('\n')
      const server = lines.findIndex((l) => l.startsWith('server = '))
      t.ok(server >= 0, `${f.path}: has a server line`)
      lines[server] = `server = "http://${CLOSED}"`
      const dest = join(hostsDir, f.path.replace('/etc/containerd/certs.d/', ''))
      await mkdir(join(dest, '..'), { recursive: true })
      await writeFile(dest, lines.join('\n'))
    }
    const containerd = await startContainerd({ t, namespace: 'generated' })
    const before = requests(mirror).length
    await fetchBoth(t, containerd, hostsDir)
    const seen = requests(mirror).slice(before)
    for (const [ref] of images) {
      const ns = ref.split('/')[0]!
      const mine = seen.filter((l) => l.path!.endsWith(`?ns=${ns}`))
      t.ok(mine.length >= 3, `${ref}: requests carried ?ns=${ns}`)
      t.ok(
        mine.every((l) => l.upstream === ns && l.status === 200),
        `${ref}: each routed to ${ns}, answered 200`,
      )
    }
    for (const [ref, image, upstream] of images) {
      const other = upstream === hub ? ghcr : hub
      for (const d of image.blobDigests)
        t.notOk(
          other.requests().some((r) => r.path.endsWith(d)),
          `${ref}: nothing asked of the other`,
        )
    }
  })

  t.test('ctr with override_path mirrors: /v2/<registry>/...?ns=<registry>', async (t) => {
    const hostsDir = join(work, 'override.d')
    for (const registry of ['docker.io', 'ghcr.io']) {
      await mkdir(join(hostsDir, registry), { recursive: true })
      await writeFile(
        join(hostsDir, registry, 'hosts.toml'),
        [
          `server = "http://${CLOSED}"`,
          '',
          `[host."${mirror.url}/v2/${registry}"]`,
          '  capabilities = ["pull", "resolve"]',
          '  override_path = true',
          '',
        ].join('\n'),
      )
    }
    const containerd = await startContainerd({ t, namespace: 'override' })
    const before = requests(mirror).length
    await fetchBoth(t, containerd, hostsDir)
    const seen = requests(mirror).slice(before)
    t.ok(
      seen.some((l) => l.path === '/v2/docker.io/library/app/manifests/v1?ns=docker.io' && l.upstream === 'docker.io' && l.status === 200),
      'the docker.io manifest, prefix and ns, answered',
    )
    t.ok(
      seen.some((l) => l.path === '/v2/ghcr.io/owner/app/manifests/v1?ns=ghcr.io' && l.upstream === 'ghcr.io' && l.status === 200),
      'the ghcr.io manifest, prefix and ns, answered',
    )
    t.ok(
      seen.length >= 4 && seen.every((l) => /^\/v2\/(docker|ghcr)\.io\//.test(l.path!) && l.status === 200),
      `every request carried the prefix and was answered (${seen.length})`,
    )
  })

  t.test('skopeo with the registries.conf drop-in client-config prints', async (t) => {
    const printed = await clientConfig('--podman')
    const fallbacks = /^location = "(docker\.io|ghcr\.io)"$/gm
    t.equal(printed.match(fallbacks)?.length, 2, 'one fallback location per registry')
    const conf = join(work, 'regmirror.conf')
    await writeFile(conf, printed.replace(fallbacks, `location = "${CLOSED}"`))
    for (const [ref, image] of images) {
      const dir = join(work, `copy-${ref.split('/')[0]!}`)
      // No --src-tls-verify=false: plain HTTP to the mirror only because the drop-in says `insecure = true`.
      await skopeoRun(['copy', '--retry-times', '0', '--src-no-creds', '--registries-conf', conf, `docker://${ref}`, `dir:${dir}`])
      t.equal(sha256(await readFile(join(dir, 'manifest.json'))), image.digest, `${ref}: the upstream's own manifest`)
      const files = await readdir(dir)
      for (const d of image.blobDigests) t.ok(files.includes(d.slice('sha256:'.length)), `${ref}: has ${d.slice(0, 19)}`)
    }
    const seen = requests(mirror)
    t.ok(
      seen.some((l) => l.path === '/v2/docker.io/library/app/manifests/v1' && l.upstream === 'docker.io'),
      'docker.io by path prefix',
    )
    t.ok(
      seen.some((l) => l.path === '/v2/ghcr.io/owner/app/manifests/v1' && l.upstream === 'ghcr.io'),
      'ghcr.io by path prefix',
    )
  })
}
