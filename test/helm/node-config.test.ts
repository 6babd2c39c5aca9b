/**
 * The chart's node configuration (nodeConfig.enabled): a DaemonSet whose script (files/node-config.sh) keeps
 * containerd's `certs.d/<registry>/hosts.toml` on every node pointing at the mirror, and removes them when it stops.
 * Rendered as `helm template` would; then the script itself runs under busybox (the DaemonSet's image) on a
 * directory standing for the node's, with the environment the kubelet would give it, and a real containerd pulls an
 * image through the chart's own mirror configuration with the files the script wrote.
 */
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createApp } from '../../src/app.js'
import { clientConfigs, parseMirrorUrl } from '../../src/clients/client-config.js'
import { WELL_KNOWN_UPSTREAMS } from '../../src/config/upstreams.js'
import { createLogger } from '../../src/log.js'
import { scenarios } from '../helpers/chart-scenarios.js'
import { startProgram, type ChildProgram } from '../helpers/child-program.js'
import { startContainerd } from '../helpers/containerd.js'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { FULLNAME, NAMESPACE, RELEASE, find, renderText, type K8sObject, type RenderOptions } from '../helpers/helm.js'
import { containerOf, loadPodConfig, podView, type PodView } from '../helpers/pod-view.js'
import { requireGoLibraries, requirePrograms } from '../helpers/programs.js'
import { sleep } from '../helpers/sleep.js'

const NODE_CONFIG = `${FULLNAME}-node-config`
const CLUSTER_IP = '10.96.0.10'

/**
 * The variables the kubelet defines in every pod for a Service of its namespace (service links), derived from the
 * rendered Service as Kubernetes derives them: name upper-cased with `-` as `_`, one `_SERVICE_PORT_<NAME>` per
 * named port.
 */
function serviceLinks(objects: K8sObject[], clusterIP: string, ports: Record<string, number> = {}): Record<string, string> {
  const svc = find(objects, 'Service', FULLNAME)
  const prefix = svc.metadata.name.toUpperCase().replaceAll('-', '_')
  const specPorts = (svc.spec as { ports: { name: string; port: number }[] }).ports
  const links: Record<string, string> = { [`${prefix}_SERVICE_HOST`]: clusterIP }
  specPorts.forEach((p, i) => {
    const port = String(ports[p.name] ?? p.port)
    if (i === 0) links[`${prefix}_SERVICE_PORT`] = port
    links[`${prefix}_SERVICE_PORT_${p.name.toUpperCase().replaceAll('-', '_')}`] = port
  })
  return links
}

/** `# registries` lines of the node ConfigMap: ConfigMap key → registry directory. */
function registriesOf(objects: K8sObject[]): [string, string][] {
  const data = find(objects, 'ConfigMap', NODE_CONFIG).data as Record<string, string>
  return data
    .registries!.split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.trim().split(' ') as [string, string])
}

/** The DaemonSet's container as the kubelet would start it: ConfigMap files written, host directory empty. */
async function nodePod(t: Test, objects: K8sObject[], links: Record<string, string>): Promise<PodView> {
  const view = await podView(objects, { workload: { kind: 'DaemonSet', name: NODE_CONFIG }, serviceLinks: links })
  t.teardown(view.close)
  return view
}

/** Runs the DaemonSet's command under busybox, as its image would. */
function runScript(t: Test, view: PodView, env: Record<string, string> = {}) {
  const command = view.container.command ?? []
  t.equal(command[0], '/bin/sh', 'the DaemonSet runs the script with sh')
  return startProgram('node-config', 'busybox', ['sh', view.path(command[1]!)], {
    env: { PATH: process.env.PATH, ...view.env, ...env },
  })
}

/**
 * SIGTERM to the shell alone, as the container runtime sends it to PID 1 (a signal to the whole process group would
 * also end its `sleep` and hide a trap that waits for it). SIGKILL after 20 s, as a grace period would.
 */
async function terminate(script: ChildProgram): Promise<void> {
  process.kill(script.pid, 'SIGTERM')
  const killer = setTimeout(() => void script.stop(0), 20_000)
  await script.exit
  clearTimeout(killer)
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

if (requireGoLibraries(t)) {
  const chart = scenarios()

  t.test('defaults: a hosts.toml for every built-in registry, the Service found through service links', async (t) => {
    const objects = await chart.render(t, 'nodeConfig', { values: { nodeConfig: { enabled: true } } })
    const expected = Object.keys(WELL_KNOWN_UPSTREAMS)
    const registries = registriesOf(objects)
    t.same(
      registries.map(([, dir]) => dir),
      expected,
      "the mirror's built-in upstreams (src/config/upstreams.ts), one directory each",
    )
    const data = find(objects, 'ConfigMap', NODE_CONFIG).data as Record<string, string>
    for (const [key, dir] of registries) {
      const toml = data[key] ?? ''
      t.match(toml, new RegExp(`^server = "${WELL_KNOWN_UPSTREAMS[dir]!.url}"$`, 'm'), `${dir}: falls back to the registry itself`)
      t.match(toml, /^\[host\."@MIRROR_URL@"\]\n {2}capabilities = \["pull", "resolve"\]$/m, `${dir}: the mirror for pull and resolve`)
    }

    const ds = find(objects, 'DaemonSet', NODE_CONFIG).spec as {
      selector: { matchLabels: Record<string, string> }
      template: {
        metadata: { labels: Record<string, string> }
        spec: { enableServiceLinks: boolean; tolerations: unknown[]; volumes: { name: string; hostPath?: { path: string } }[] }
      }
    }
    t.equal(ds.template.spec.enableServiceLinks, true, 'service links on: they carry the Service address')
    t.same(ds.template.spec.tolerations, [{ operator: 'Exists' }], 'every node, whatever its taints')
    t.equal(ds.template.spec.volumes.find((v) => v.name === 'hosts')?.hostPath?.path, '/etc/containerd/certs.d')
    const mirror = find(objects, 'StatefulSet').spec as { selector: { matchLabels: Record<string, string> } }
    const selectsMirror = Object.entries(mirror.selector.matchLabels).every(([k, v]) => ds.template.metadata.labels[k] === v)
    t.notOk(selectsMirror, "the mirror's selector does not take the DaemonSet's pods")

    const view = await nodePod(t, objects, serviceLinks(objects, CLUSTER_IP))
    t.equal(view.env.MIRROR_URL, `http://${CLUSTER_IP}:5000`, "MIRROR_URL: the Service's ClusterIP and port, expanded by Kubernetes")
    t.equal(view.env.HOSTS_DIR, view.path('/host/certs.d'), 'HOSTS_DIR is the host directory')
    const container = containerOf(objects, 'DaemonSet', NODE_CONFIG).container as { securityContext?: Record<string, unknown> }
    t.match(container.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })

    const other = await chart.render(t, 'nodeConfig, another service port', {
      values: { nodeConfig: { enabled: true }, service: { port: 80 } },
    })
    const otherView = await nodePod(t, other, serviceLinks(other, CLUSTER_IP))
    t.equal(otherView.env.MIRROR_URL, `http://${CLUSTER_IP}:80`, 'service.port is what the nodes dial')

    const given = await chart.render(t, 'nodeConfig.mirrorUrl', {
      values: { nodeConfig: { enabled: true, mirrorUrl: 'http://127.0.0.1:30500' } },
    })
    const annotation = (o: K8sObject[]) =>
      (find(o, 'DaemonSet').spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations[
        'checksum/node-config'
      ]
    t.equal((await nodePod(t, given, {})).env.MIRROR_URL, 'http://127.0.0.1:30500', 'mirrorUrl as given')
    t.not(annotation(given), annotation(objects), 'a changed mirrorUrl restarts the pods (read at start)')
    t.match(await renderText({ values: { nodeConfig: { enabled: true } }, notes: true }), /pointed at the mirror for: docker\.io/)
  })

  t.test('registries: the same hosts.toml as `regmirror client-config --containerd` for the same configuration', async (t) => {
    const values: RenderOptions['values'] = {
      upstreams: [
        { name: 'registry.internal:5000', url: 'http://10.0.0.5:5000' },
        { name: 'quay.io', enabled: false },
        { name: 'ghcr.io', url: 'https://ghcr.example.com' },
        { name: 'internal', url: 'http://10.0.0.6:5000' },
      ],
      nodeConfig: { enabled: true },
    }
    const objects = await chart.render(t, 'nodeConfig, custom upstreams', { values })
    const mirrorUrl = `http://${CLUSTER_IP}:5000`
    const pod = await podView(objects)
    t.teardown(pod.close)
    const { config } = await loadPodConfig(pod)
    const { configs } = clientConfigs(config, parseMirrorUrl(mirrorUrl), ['containerd'])
    const expected = Object.fromEntries(configs[0]!.files.map((f) => [f.path, f.text.trim()]))
    const data = find(objects, 'ConfigMap', NODE_CONFIG).data as Record<string, string>
    // What the script writes, less this release's comment lines.
    const written = (key: string) =>
      data[key]!.replaceAll('@MIRROR_URL@', mirrorUrl)
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n')
        .trim()
    const actual = Object.fromEntries(
      registriesOf(objects).map(([key, dir]) => [`/etc/containerd/certs.d/${dir}/hosts.toml`, written(key)]),
    )
    t.same(actual, expected, 'the files of the configuration the pods start with, disabled ones and non-registry names left out')
    t.ok(`/etc/containerd/certs.d/registry.internal:5000/hosts.toml` in actual, 'a custom upstream gets its hosts.toml')
    t.equal(
      registriesOf(objects).find(([, dir]) => dir === 'registry.internal:5000')?.[0],
      'registry.internal_5000.toml',
      "a ConfigMap key cannot hold ':'",
    )

    const few = await chart.render(t, 'nodeConfig.registries', {
      values: { nodeConfig: { enabled: true, registries: ['docker.io', 'registry.k8s.io'], ca: '/etc/ssl/mirror-ca.pem' } },
    })
    t.same(
      registriesOf(few).map(([, dir]) => dir),
      ['docker.io', 'registry.k8s.io'],
    )
    t.match(
      (find(few, 'ConfigMap', NODE_CONFIG).data as Record<string, string>)['docker.io.toml'],
      /^ {2}ca = "\/etc\/ssl\/mirror-ca\.pem"$/m,
    )
    await t.rejects(
      renderText({ values: { nodeConfig: { enabled: true, registries: ['quay.io'] }, upstreams: [{ name: 'quay.io', enabled: false }] } }),
      /nodeConfig.registries: "quay.io" is not an enabled upstream/,
    )
    await t.rejects(
      renderText({ values: { ...values, nodeConfig: { enabled: true, registries: ['internal'] } } }),
      /nodeConfig.registries: "internal" names no registry/,
    )
    const only = await chart.render(t, 'nodeConfig without the built-ins', {
      values: {
        wellKnownUpstreams: false,
        defaultUpstream: 'registry.internal',
        upstreams: [{ name: 'registry.internal', url: 'http://10.0.0.5' }],
        nodeConfig: { enabled: true },
      },
    })
    t.same(
      registriesOf(only).map(([, dir]) => dir),
      ['registry.internal'],
    )
  })

  t.test('the script on a node: writes, keeps, leaves what is not its own, removes its files on SIGTERM', async (t) => {
    if (!requirePrograms(t, ['busybox'])) return
    const objects = await chart.render(t, 'nodeConfig for the script', { values: { nodeConfig: { enabled: true } } })
    const view = await nodePod(t, objects, serviceLinks(objects, CLUSTER_IP))
    const hosts = view.env.HOSTS_DIR!
    const marker = view.env.MARKER!
    t.match(marker, new RegExp(`release ${RELEASE}, namespace ${NAMESPACE}`), 'the marker names the release')
    const foreign = 'server = "https://registry-1.docker.io"\n[host."http://by-hand:5000"]\n'
    await mkdir(join(hosts, 'docker.io'), { recursive: true })
    await writeFile(join(hosts, 'docker.io/hosts.toml'), foreign)
    await mkdir(join(hosts, 'old.example'))
    await writeFile(join(hosts, 'old.example/hosts.toml'), `${marker}\nserver = "https://old.example"\n`)
    await mkdir(join(hosts, 'ghcr.io'))
    await writeFile(join(hosts, 'ghcr.io/hosts.toml'), `${marker}\n[host."http://10.0.0.1:5000"]\n`)

    // A check every second instead of 30, so that a change of the registries shows within the test.
    const script = runScript(t, view, { INTERVAL: '1' })
    t.teardown(() => script.stop())
    const ours = registriesOf(objects)
      .map(([, dir]) => dir)
      .filter((d) => d !== 'docker.io')
    const written = (dir: string) => readFile(join(hosts, dir, 'hosts.toml'), 'utf8').catch(() => '')
    // One pass of the script: every file written, then the ones no longer listed removed.
    await waitFor(
      'one pass',
      async () => (await Promise.all(ours.map(written))).every((s) => s.includes(CLUSTER_IP)) && !existsSync(join(hosts, 'old.example')),
    )
    for (const dir of ours) {
      const text = await written(dir)
      t.equal(text.split('\n')[0], marker, `${dir}: marked as this release's`)
      t.match(text, `[host."http://${CLUSTER_IP}:5000"]`, `${dir}: the mirror's address in place of @MIRROR_URL@`)
    }
    t.equal(await written('docker.io'), foreign, 'a hosts.toml written by hand is left alone')
    t.match(script.output(), /leaving .*docker\.io\/hosts\.toml alone/, '... and the log says so')
    t.pass('a registry this release no longer lists: its file and directory are gone')

    // A ConfigMap update (the kubelet swaps the mounted files): registry.k8s.io leaves the list.
    const listFile = join(view.path('/config'), 'registries')
    const list = await readFile(listFile, 'utf8')
    await writeFile(listFile, list.replace(/^.* registry\.k8s\.io\n/m, ''))
    await waitFor('registry.k8s.io removed', () => !existsSync(join(hosts, 'registry.k8s.io')))
    t.pass('a registry removed from the list loses its file at the next check')

    await terminate(script)
    t.same(await script.exit, { code: 0, signal: null }, 'SIGTERM: the trap ran and the script exited 0')
    t.same(await readdir(hosts), ['docker.io'], 'every file of this release removed; the one written by hand stays')
    t.equal(await written('docker.io'), foreign)
  })

  t.test('the script refuses a mirror URL Kubernetes did not expand (no Service links yet)', async (t) => {
    if (!requirePrograms(t, ['busybox'])) return
    const objects = await chart.render(t, 'nodeConfig without service links', { values: { nodeConfig: { enabled: true } } })
    const view = await nodePod(t, objects, {})
    t.match(view.env.MIRROR_URL, /\$\(/, 'unexpanded, as the kubelet leaves an undefined variable')
    const script = runScript(t, view)
    const exit = await script.exit
    t.equal(exit.code, 1, 'exits 1: the kubelet restarts it, with the Service links by then')
    t.match(script.output(), /MIRROR_URL is not usable/)
    t.same(await readdir(view.env.HOSTS_DIR!), [], 'and writes nothing')
  })

  t.test('containerd pulls through the mirror the chart configures, with the hosts.toml the script wrote', async (t) => {
    if (!requirePrograms(t, ['busybox', 'containerd', 'ctr'])) return
    const fake = await startFakeRegistry()
    t.teardown(() => fake.close())
    const image = fake.addImage('library/alpine', '3.20')
    // The fake registry is named by its own address: containerd's fallback (`server`, https:// there) stays local.
    const registry = new URL(fake.url).host
    const objects = await chart.render(t, 'nodeConfig with containerd', {
      values: {
        wellKnownUpstreams: false,
        defaultUpstream: registry,
        upstreams: [{ name: registry, url: fake.url }],
        persistence: { size: '1Gi' },
        nodeConfig: { enabled: true },
      },
    })

    const mirrorPod = await podView(objects)
    t.teardown(mirrorPod.close)
    mirrorPod.env.REGMIRROR_LISTEN = '127.0.0.1:0'
    const { config } = await loadPodConfig(mirrorPod)
    const app = await createApp(config, { logger: createLogger('silent') })
    t.teardown(() => app.close())
    await app.listen()
    const port = Number(new URL(app.url()).port)

    const view = await nodePod(t, objects, serviceLinks(objects, '127.0.0.1', { http: port }))
    const script = runScript(t, view)
    t.teardown(() => script.stop())
    const hostsToml = join(view.env.HOSTS_DIR!, registry, 'hosts.toml')
    await waitFor(`${registry}/hosts.toml`, () => existsSync(hostsToml))

    const ctrd = await startContainerd({ t })
    await ctrd.ctr(['content', 'fetch', '--all-platforms', `${registry}/library/alpine:3.20`], { hostsDir: view.env.HOSTS_DIR! })
    const content = (await ctrd.ctr(['content', 'ls', '-q'])).stdout.split('\n')
    t.same(
      image.blobs.map((b) => b.digest).filter((d) => !content.includes(d)),
      [],
      'containerd has every blob (it checks each against its digest)',
    )
    const metrics = await (await fetch(`${app.url()}/metrics`)).text()
    const misses = Number(/^regmirror_requests_total\{kind="blob",result="miss"\} (\d+)$/m.exec(metrics)?.[1] ?? 0)
    t.equal(misses, image.blobs.length, 'every blob went through the mirror, not the fallback')
    t.equal(fake.count({ server: 'cdn', method: 'GET' }), image.blobs.length, 'and the mirror fetched each once')

    // The rendered 30 s between checks: the trap must not wait for the sleep to end.
    const stopping = Date.now()
    await terminate(script)
    t.ok(Date.now() - stopping < 10_000, 'SIGTERM ends it at once, not after the sleep')
    t.notOk(existsSync(hostsToml), 'stopped (helm uninstall): the file is gone, containerd goes to the registry again')
  })

  chart.checkUnknownFields(t)
}
