/**
 * A `docker save` archive written by a real Docker daemon (20.10: manifest.json, `<id>/layer.tar`) imported into
 * the data dir of an offline mirror that is running (issue #12): the mirror serves it without a restart, under
 * the name Docker gave it (`e2e/saved:1`, Docker Hub style, so the default upstream's `docker.io/e2e/saved:1`).
 * The archive has no manifest; regmirror writes one over the saved config and layers. The test image's layers are
 * uncompressed tars, so the saved layers are the registry's own blobs, byte for byte, and the config too.
 */
import t, { type Test } from 'tap'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { requirePrograms } from '../helpers/programs.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { buildOciLayout } from '../helpers/oci-image.js'
import { startDistribution } from '../helpers/distribution.js'
import { pushLayout, skopeoCopy, skopeoInspect } from '../helpers/skopeo.js'
import { startDockerd } from '../helpers/dockerd.js'
import { readPulledDir } from '../helpers/verify.js'

/** `regmirror ARGS` from the sources; its stdout, after checking it exited 0. */
async function regmirror(t: Test, args: string[]): Promise<string> {
  const r = await runCli(args)
  t.equal(r.code, 0, `regmirror ${args[0]} exits 0`, { stdout: r.stdout, stderr: r.stderr })
  return r.stdout
}

if (requirePrograms(t, ['docker-registry', 'skopeo', 'dockerd', 'docker'])) {
  t.test('docker save of a real daemon, imported into a running offline mirror, pulls with skopeo and docker', async (t) => {
    const work = await makeTempDir('airgap-save')
    t.teardown(() => removeTempDir(work))
    const registry = await startDistribution({ auth: 'none', t })
    const tool = await buildOciLayout(join(work, 'tool'), { tag: '1', layerSizes: [1024 * 1024, 64 * 1024] })
    await pushLayout(tool.layoutDir, '1', registry.hostPort, 'e2e/tool')
    const toolBlobs = [...tool.configDigests, ...tool.layerDigests].sort()

    // The closed side's mirror: offline, its docker.io a closed port, an empty cache.
    const closedData = join(work, 'closed')
    const closed = await startMirrorProcess(['--data', closedData, '--offline', '--upstream', 'docker.io=http://127.0.0.1:9'])
    t.teardown(() => closed.program.stop())
    const closedHost = new URL(closed.url).host
    const daemon = await startDockerd({
      t,
      daemonJson: { 'registry-mirrors': [closed.url], 'insecure-registries': [closedHost, registry.hostPort] },
    })

    // The image gets into the daemon from the registry, is renamed Docker Hub style and saved.
    await daemon.docker(['pull', `${registry.hostPort}/e2e/tool:1`])
    await daemon.docker(['tag', `${registry.hostPort}/e2e/tool:1`, 'e2e/saved:1'])
    const saved = join(work, 'saved.tar')
    await daemon.docker(['save', '-o', saved, 'e2e/saved:1'])
    await daemon.docker(['image', 'rm', 'e2e/saved:1', `${registry.hostPort}/e2e/tool:1`])
    await registry.stop()

    const image = `docker://${closedHost}/e2e/saved:1`
    await t.rejects(skopeoInspect(image, { raw: true }), /manifest unknown/i, 'before the import the mirror does not have it')

    const imported = await regmirror(t, ['import', '--data', closedData, '--progress', 'none', saved])
    t.match(imported, /import: 1 image imported, 0 failed;/)
    // The archive's config and two layers went into the cache (the pulls below show it): the summary says so.
    const stored = Number(/; (\d+) blobs stored/.exec(imported)?.[1])
    t.ok(stored >= 3, `the summary counts the config and both layers as stored (it says ${stored})`)
    const digest = /ok {6}docker\.io\/e2e\/saved:1 (sha256:[a-f0-9]{64})/.exec(imported)?.[1]
    t.ok(digest, 'imported as docker.io/e2e/saved:1, with the digest of the manifest written for it', { imported })

    // skopeo checks every blob against its digest as it copies.
    const pulledDir = join(work, 'pulled')
    await skopeoCopy(image, `dir:${pulledDir}`, { preserveDigests: true })
    const pulled = await readPulledDir(pulledDir)
    t.equal(pulled.manifestDigest, digest, 'skopeo pulls the manifest import wrote, without a mirror restart')
    t.same(pulled.blobDigests, toolBlobs, 'the config and layers are the registry’s')
    t.same(pulled.corrupt, [])

    // The daemon, which no longer has the image, pulls it back through registry-mirrors.
    t.match((await daemon.docker(['image', 'ls', '-q'])).stdout.trim(), /^$/, 'the daemon has no image left')
    await daemon.docker(['pull', 'e2e/saved:1'])
    const [id, repoDigests] = (await daemon.docker(['image', 'inspect', '--format', '{{.Id}} {{json .RepoDigests}}', 'e2e/saved:1'])).stdout
      .trim()
      .split(' ', 2)
    t.equal(id, tool.configDigests[0], 'docker: the same image ID (layers checked against its diff_ids)')
    t.same(JSON.parse(repoDigests!), [`e2e/saved@${digest}`])

    await closed.program.stop()
    const verified = await regmirror(t, ['verify', '--data', closedData])
    t.match(verified, /no problems/, 'the cache verifies clean')
  })
}
