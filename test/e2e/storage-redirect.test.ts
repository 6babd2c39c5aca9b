/**
 * storage.s3.redirect with the real clients: a mirror whose hot tier (its disk) is empty and whose bucket (radosgw)
 * holds the blobs answers each blob GET with a 307 to a presigned URL of the object. Skopeo, containerd's `ctr` and
 * the Docker daemon follow it and verify what they get (skopeo: every blob of the OCI layout hashes to its name;
 * containerd commits a blob to its content store only if it matches its digest; the daemon checks layers and
 * diff_ids), and the upstream (a CNCF distribution) sends no blob at all.
 */
import t from 'tap'
import { join } from 'node:path'
import { bucketView, storageConfig } from '../helpers/bucket.js'
import { until } from '../helpers/crash-tools.js'
import { startContainerd, writeHostsToml } from '../helpers/containerd.js'
import { startDistribution } from '../helpers/distribution.js'
import { startDockerd } from '../helpers/dockerd.js'
import { get, startMirror } from '../helpers/mirror.js'
import { AMD64_ARM64, buildOciLayout } from '../helpers/oci-image.js'
import { requirePrograms } from '../helpers/programs.js'
import { RADOSGW_PROGRAMS, startRadosgw } from '../helpers/radosgw.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { blobGets, readPulledOciLayout } from '../helpers/verify.js'

const MiB = 1024 * 1024
// Uploads run beside the responses, on a shared machine: a bound for a stuck test, not a timing.
const WAIT = 60_000
const CLIENTS = ['docker-registry', 'skopeo', 'containerd', 'ctr', 'dockerd', 'docker', 'openssl']

if (requirePrograms(t, [...RADOSGW_PROGRAMS, ...CLIENTS])) {
  t.test('skopeo, ctr and dockerd follow the presigned redirect and verify the blobs', async (t) => {
    const work = await makeTempDir('s3redir')
    t.teardown(() => removeTempDir(work))
    const rgw = await startRadosgw({ t })
    const bucket = await rgw.createBucket('redirect')
    const view = bucketView(rgw, bucket)
    t.teardown(() => view.close())
    const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
    const app = await buildOciLayout(join(work, 'app'), { tag: 'v1', layerSizes: [6 * MiB, 512 * 1024], platforms: AMD64_ARM64 })
    await pushLayout(app.layoutDir, 'v1', hub.hostPort, 'library/e2eapp', { destCreds: 'pusher:secret' })
    const config = {
      upstreams: [{ name: 'docker.io', url: hub.url }],
      tagTtl: '1h',
      storage: storageConfig(rgw, bucket, { redirect: true }),
    }

    // Warm the bucket through a first mirror: streamed from upstream (nothing to redirect to yet), uploaded once verified.
    const first = await startMirror(t, config)
    await skopeoCopy(`docker://${new URL(first.url).host}/library/e2eapp:v1`, `oci:${join(work, 'warm')}:v1`, { all: true })
    // Manifests are kept there too, so that a replica with an empty disk needs no upstream for them either.
    const image = [...app.blobDigests, ...app.manifestDigests, ...(app.indexDigest ? [app.indexDigest] : [])]
    await until('the whole image in the bucket', async () => (await view.digests()).length === image.length, WAIT)
    t.same((await view.digests()).sort(), image.sort(), 'the bucket holds exactly the blobs and the manifests')
    await first.close()

    // A replica with an empty disk: every blob GET is a redirect.
    const mirror = await startMirror(t, config)
    const host = new URL(mirror.url).host
    const mark = hub.requests().length
    const redirects = async () => {
      const m = /regmirror_storage_served_total\{how="redirect"\} (\d+)/.exec((await get(`${mirror.url}/metrics`)).body.toString())
      return m ? Number(m[1]) : 0
    }

    const dest = join(work, 'skopeo')
    await skopeoCopy(`docker://${host}/library/e2eapp:v1`, `oci:${dest}:v1`, { all: true, preserveDigests: true })
    const pulled = await readPulledOciLayout(dest)
    t.same(pulled.corrupt, [], 'skopeo: every blob hashes to its name')
    t.ok(
      app.blobDigests.every((d) => pulled.blobDigests.includes(d)),
      'skopeo: every config and layer',
    )
    t.equal(await redirects(), app.blobDigests.length, 'skopeo: each blob was a redirect')

    const hostsDir = join(work, 'hosts.d')
    await writeHostsToml(hostsDir, 'docker.io', mirror.url, { server: null })
    const ctrd = await startContainerd({ t })
    await ctrd.ctr(['content', 'fetch', '--all-platforms', 'docker.io/library/e2eapp:v1'], { hostsDir })
    const content = (await ctrd.ctr(['content', 'ls', '-q'])).stdout.split('\n')
    t.same(
      app.blobDigests.filter((d) => !content.includes(d)),
      [],
      'ctr: containerd committed every blob (each verified against its digest)',
    )
    t.equal(await redirects(), 2 * app.blobDigests.length, 'ctr: each blob was a redirect')

    const daemon = await startDockerd({ t, daemonJson: { 'registry-mirrors': [mirror.url], 'insecure-registries': [host] } })
    await daemon.docker(['pull', '--platform', 'linux/amd64', 'e2eapp:v1'])
    const amd64 = app.images.find((i) => i.platform.architecture === 'amd64')!
    const id = (await daemon.docker(['image', 'inspect', '--format', '{{.Id}}', 'e2eapp:v1'])).stdout.trim()
    t.equal(id, amd64.configDigest, 'docker: the image ID is the amd64 config digest (layers and diff_ids checked)')
    const dockerRedirects = (await redirects()) - 2 * app.blobDigests.length
    t.equal(dockerRedirects, 1 + amd64.layerDigests.length, 'docker: its config and layers were redirects')

    t.same(blobGets(hub.requests().slice(mark)), [], 'the upstream sent no blob to the replica with the empty disk')
  })
}
