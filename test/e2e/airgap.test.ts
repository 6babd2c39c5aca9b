/**
 * The air-gap workflow of the README with real parts (issue #12). Connected side: `regmirror preload --platform
 * linux/amd64` of a multi-arch image from a token-auth CNCF distribution standing in for Docker Hub (upstream
 * `docker.io`), no server running, then `regmirror export`. The archive is an OCI layout that skopeo reads by the
 * full reference regmirror names it with. Closed side: `regmirror import` into an empty data dir, then a mirror
 * started `--offline` on it, its docker.io pointing at a closed port, and with the distribution stopped too:
 * skopeo, containerd's ctr (hosts.toml, `?ns=docker.io`) and the Docker daemon (`registry-mirrors`) pull the image
 * with the upstream's digests, and nothing else can have served it.
 * (Importing into a running mirror, and docker save archives: airgap-docker-save.test.ts.)
 */
import t, { type Test } from 'tap'
import { createReadStream } from 'node:fs'
import { join } from 'node:path'
import tar from 'tar-stream'
import { runCli } from '../helpers/cli.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { AMD64_ARM64, buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout, skopeoCopy, skopeoInspect } from '../helpers/skopeo.js'
import { startContainerd, writeHostsToml } from '../helpers/containerd.js'
import { startDockerd } from '../helpers/dockerd.js'
import { blobGets, readPulledDir } from '../helpers/verify.js'
import { sha256 } from '../helpers/oci-fixtures.js'

/** `regmirror ARGS` from the sources; its stdout, after checking it exited 0. */
async function regmirror(t: Test, args: string[]): Promise<string> {
  const r = await runCli(args)
  t.equal(r.code, 0, `regmirror ${args[0]} exits 0`, { stdout: r.stdout, stderr: r.stderr })
  return r.stdout
}

/** The digests of the blobs/sha256/ entries of a tar. */
async function tarBlobDigests(file: string): Promise<string[]> {
  const extract = tar.extract()
  createReadStream(file).pipe(extract)
  const digests: string[] = []
  for await (const entry of extract) {
    const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(entry.header.name)
    if (m) digests.push(`sha256:${m[1]}`)
    entry.resume()
  }
  return digests.sort()
}

if (requirePrograms(t, ['docker-registry', 'skopeo', 'openssl', 'containerd', 'ctr', 'dockerd', 'docker'])) {
  t.test(
    'preload one platform and export on the connected side; import, then an offline mirror serves skopeo, ctr and docker',
    async (t) => {
      const work = await makeTempDir('airgap')
      t.teardown(() => removeTempDir(work))
      const hub = await startDistribution({ auth: 'token', tokenServer: { users: { pusher: 'secret' } }, t })
      const app = await buildOciLayout(join(work, 'app'), {
        tag: 'v1',
        layerSizes: [2 * 1024 * 1024, 256 * 1024],
        platforms: AMD64_ARM64,
      })
      await pushLayout(app.layoutDir, 'v1', hub.hostPort, 'e2e/app', { destCreds: 'pusher:secret' })
      const amd64 = app.images.find((i) => i.platform.architecture === 'amd64')!
      const arm64 = app.images.find((i) => i.platform.architecture === 'arm64')!
      const amd64Blobs = [amd64.configDigest, ...amd64.layerDigests].sort()

      // Connected side: no server, only the data dir.
      const connected = join(work, 'connected')
      const upstream = ['--data', connected, '--upstream', `docker.io=${hub.url}`, '--progress', 'none']
      const preloaded = await regmirror(t, ['preload', ...upstream, '--platform', 'linux/amd64', 'e2e/app:v1'])
      t.match(preloaded, /preload: 1 image \(1 done, 0 failed\)/)
      t.match(preloaded, `ok      docker.io/e2e/app:v1 ${app.indexDigest}`, 'the tag is the index the upstream has')
      t.equal(blobGets(hub.requests(), amd64.layerDigests).length, amd64.layerDigests.length, 'each amd64 layer was fetched')
      t.same(blobGets(hub.requests(), arm64.layerDigests), [], 'no arm64 layer was')

      const archive = join(work, 'app.tar')
      const mark = hub.requests().length
      const exported = await regmirror(t, ['export', ...upstream, '--platform', 'linux/amd64', '-o', archive, 'e2e/app:v1'])
      t.match(exported, `export: 1 image, 5 blobs`)
      t.same(hub.requests().slice(mark), [], 'export reads the cache only')
      t.same(
        await tarBlobDigests(archive),
        [app.indexDigest!, amd64.manifestDigest, ...amd64Blobs].sort(),
        'the archive holds the index and the amd64 image, nothing of arm64',
      )
      await hub.stop()

      // skopeo reads the archive by the name regmirror gives the image in index.json: its full reference.
      const ref = `oci-archive:${archive}:docker.io/e2e/app:v1`
      t.equal(sha256((await skopeoInspect(ref, { raw: true })).stdout), app.indexDigest, 'skopeo: the archive names the index')
      const fromArchive = join(work, 'from-archive')
      await skopeoCopy(ref, `dir:${fromArchive}`, { preserveDigests: true })
      let pulled = await readPulledDir(fromArchive)
      t.equal(pulled.manifestDigest, amd64.manifestDigest, 'skopeo copies the amd64 manifest out of the archive')
      t.same(pulled.blobDigests, amd64Blobs, 'and its config and layers')
      t.same(pulled.corrupt, [])

      // Closed side: import into an empty data dir, then start the mirror on it.
      const closedData = join(work, 'closed')
      const imported = await regmirror(t, ['import', '--data', closedData, '--progress', 'none', archive])
      t.match(imported, /import: 1 image imported, 0 failed; 5 blobs stored/)
      t.match(imported, `ok      docker.io/e2e/app:v1 ${app.indexDigest}`)
      const closed = await startMirrorProcess(['--data', closedData, '--offline', '--upstream', 'docker.io=http://127.0.0.1:9'])
      t.teardown(() => closed.program.stop())
      const closedHost = new URL(closed.url).host

      // skopeo, through the default upstream (docker.io).
      const image = `docker://${closedHost}/e2e/app:v1`
      t.equal(sha256((await skopeoInspect(image, { raw: true })).stdout), app.indexDigest, 'skopeo: the tag is the upstream index')
      const fromMirror = join(work, 'from-mirror')
      await skopeoCopy(image, `dir:${fromMirror}`, { preserveDigests: true })
      pulled = await readPulledDir(fromMirror)
      t.equal(pulled.manifestDigest, amd64.manifestDigest, 'skopeo pulls the amd64 manifest')
      t.same(pulled.blobDigests, amd64Blobs, 'and the upstream config and layers')
      t.same(pulled.corrupt, [], 'every blob hashes to its digest')
      await t.rejects(
        skopeoInspect(`docker://${closedHost}/e2e/app@${arm64.manifestDigest}`, { raw: true }),
        /manifest unknown|not found|404/i,
        'the platform left out is not there',
      )

      // containerd: hosts.toml makes the mirror docker.io's only host; ctr adds ?ns=docker.io.
      const hostsDir = join(work, 'hosts.d')
      await writeHostsToml(hostsDir, 'docker.io', closed.url, { server: null })
      const ctrd = await startContainerd({ t })
      await ctrd.ctr(['content', 'fetch', '--platform', 'linux/amd64', 'docker.io/e2e/app:v1'], { hostsDir })
      const content = (await ctrd.ctr(['content', 'ls', '-q'])).stdout.split('\n')
      t.same(
        [app.indexDigest!, amd64.manifestDigest, ...amd64Blobs].filter((d) => !content.includes(d)),
        [],
        'ctr fetched (and verified) the index, the amd64 manifest, its config and layers',
      )

      // The Docker daemon, configured with registry-mirrors as the README says; Docker Hub is not reachable.
      const daemon = await startDockerd({ t, daemonJson: { 'registry-mirrors': [closed.url], 'insecure-registries': [closedHost] } })
      await daemon.docker(['pull', '--platform', 'linux/amd64', 'e2e/app:v1'])
      const [id, repoDigests] = (
        await daemon.docker(['image', 'inspect', '--format', '{{.Id}} {{json .RepoDigests}}', 'e2e/app:v1'])
      ).stdout
        .trim()
        .split(' ', 2)
      t.equal(id, amd64.configDigest, 'docker: the image ID is the amd64 config digest (layers checked against diff_ids)')
      t.same(JSON.parse(repoDigests!), [`e2e/app@${app.indexDigest}`], 'pulled by the index the tag names')

      await closed.program.stop()
      const verified = await regmirror(t, ['verify', '--data', closedData])
      t.match(verified, /no problems/, 'the closed cache verifies clean after all this')
    },
  )
}
