/**
 * The Helm chart helm/regmirror, rendered as `helm template` renders it (test/helpers/helm.ts): with the default
 * values and with each option, every object checked against the Kubernetes schemas, and the configuration each
 * pod would start with loaded by the mirror's own loader (test/helpers/pod-view.ts). This file: the mirror's
 * configuration, storage and cache size, replicas and peers, Redis, credentials, client authentication, and
 * the pod. chart-network.test.ts: Services, Ingress, TLS, monitoring, NetworkPolicy; node-config.test.ts: the
 * node configuration DaemonSet; dashboard.test.ts: the Grafana dashboard against /metrics; chart-readme.test.ts:
 * the README's values table against values.yaml.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { ConfigError } from '../../src/config/load.js'
import { scenarios, selects } from '../helpers/chart-scenarios.js'
import { CHART_DIR, FULLNAME, NAMESPACE, REPO, find, kinds, renderText, type K8sObject, type RenderOptions } from '../helpers/helm.js'
import { containerOf, loadPodConfig, podView, type EnvVar, type PodViewOptions } from '../helpers/pod-view.js'
import { requireGoLibraries } from '../helpers/programs.js'

const run = promisify(execFile)
const MiB = 1024 * 1024
const GiB = 1024 * MiB
const NS = NAMESPACE

/** The configuration the mirror would start with in the rendered StatefulSet's pod. */
async function podConfig(t: Test, objects: K8sObject[], opts: PodViewOptions = {}) {
  const view = await podView(objects, opts)
  t.teardown(view.close)
  return { ...(await loadPodConfig(view)), view }
}

function envOf(objects: K8sObject[]): Record<string, EnvVar> {
  const env = containerOf(objects).container.env ?? []
  return Object.fromEntries(env.map((e) => [e.name, e]))
}

function statefulSetSpec(objects: K8sObject[]) {
  return find(objects, 'StatefulSet').spec as {
    replicas: number
    template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: Record<string, unknown> }
    volumeClaimTemplates?: { spec: { resources: { requests: { storage: string } }; storageClassName?: string } }[]
  }
}

/** The decoded value of a key of a rendered Secret. */
function secretValue(objects: K8sObject[], name: string, key: string): string {
  const data = find(objects, 'Secret', name).data as Record<string, string>
  return Buffer.from(data[key]!, 'base64').toString('utf8')
}

if (requireGoLibraries(t)) {
  const chart = scenarios()

  t.test('defaults: one replica with a volume claim, the configuration the mirror accepts', async (t) => {
    const objects = await chart.render(t, 'defaults')
    t.same(
      kinds(objects),
      [
        `ConfigMap/${FULLNAME}`,
        `Service/${FULLNAME}`,
        `Service/${FULLNAME}-headless`,
        `ServiceAccount/${FULLNAME}`,
        `StatefulSet/${FULLNAME}`,
      ],
      'only what a single replica needs',
    )
    const { appVersion } = parse(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as { appVersion?: string }
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }
    t.equal(appVersion, pkg.version, "the chart's appVersion is the mirror's version")
    const { container } = containerOf(objects)
    t.equal((container as { image?: string }).image, `regmirror/regmirror:${pkg.version}`, 'the image tag defaults to appVersion')

    const { config, text } = await podConfig(t, objects)
    t.match(config.dataDir, /\/var\/lib\/regmirror$/, 'the data directory is the volume at /var/lib/regmirror')
    t.equal(config.cache.maxSize, Math.floor((50 * GiB * 0.9) / MiB) * MiB, 'cache.maxSize is 90% of persistence.size (50Gi)')
    t.match(text, /maxSize: 46080MiB/, 'written in MiB')
    t.equal(config.defaultUpstream, 'docker.io')
    t.ok(
      config.upstreams.some((u) => u.name === 'ghcr.io'),
      'the built-in upstreams are there',
    )
    t.equal(config.timeouts.shutdown, 30_000, 'timeouts.shutdown from shutdownTimeoutSeconds')
    t.equal(config.server.workers, 1, 'one worker: the CPU request (250m) rounded up, not the CPUs of the node')

    const spec = statefulSetSpec(objects)
    t.equal(spec.volumeClaimTemplates?.[0]?.spec.resources.requests.storage, '50Gi', 'a 50Gi claim per replica')
    t.equal(spec.volumeClaimTemplates?.[0]?.spec.storageClassName, undefined, "the cluster's default StorageClass")
    const pod = spec.template.spec as {
      terminationGracePeriodSeconds: number
      securityContext: Record<string, unknown>
      containers: {
        readinessProbe: { httpGet: { path: string; port: string } }
        livenessProbe: { httpGet: { path: string } }
        startupProbe: { httpGet: { path: string }; periodSeconds: number; failureThreshold: number }
        securityContext: Record<string, unknown>
        ports: { name: string; containerPort: number }[]
      }[]
      affinity: {
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: { podAffinityTerm: { labelSelector: { matchLabels: Record<string, string> } } }[]
        }
      }
    }
    const c = pod.containers[0]!
    t.same(c.readinessProbe.httpGet, { path: '/readyz', port: 'http' }, 'readiness: /readyz (503 while rebuilding the index and draining)')
    t.equal(c.livenessProbe.httpGet.path, '/healthz')
    t.equal(c.startupProbe.httpGet.path, '/healthz')
    t.ok(
      c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 600,
      'the start-up probe allows 10 minutes or more (a large index)',
    )
    t.same(c.ports, [{ name: 'http', containerPort: 5000 }])
    t.ok(pod.terminationGracePeriodSeconds > config.timeouts.shutdown / 1000, 'the grace period outlasts the mirror’s drain')
    t.match(pod.securityContext, { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } })
    t.match(c.securityContext, { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
    const term = pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]!.podAffinityTerm
    t.ok(selects(term.labelSelector.matchLabels, spec.template.metadata.labels), 'soft anti-affinity against its own pods')
    t.notOk('REGMIRROR_PEERS' in envOf(objects), 'one replica: no peers')
    t.match(spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/, 'a configuration change rolls the pods')

    const notes = await renderText({ notes: true })
    t.match(notes, new RegExp(`http://${FULLNAME}\\.${NS}\\.svc\\.cluster\\.local:5000`), 'NOTES name the in-cluster address')
    t.match(notes, /Cache per replica: 46080MiB/)
  })

  t.test('stopping: a wait before SIGTERM while the proxies let go, then the drain, all within the grace period', async (t) => {
    const objects = await chart.render(t, 'preStopSeconds', { values: { preStopSeconds: 1, shutdownTimeoutSeconds: 10 } })
    const { config } = await podConfig(t, objects)
    const pod = statefulSetSpec(objects).template.spec as { terminationGracePeriodSeconds: number }
    const container = containerOf(objects).container as { lifecycle?: { preStop?: { exec?: { command: string[] } } } }
    const command = container.lifecycle?.preStop?.exec?.command ?? []
    t.equal(command[0], 'node', 'with the one program the image is sure to have')
    const started = Date.now()
    await run(command[0]!, command.slice(1))
    t.ok(Date.now() - started >= 1000, 'the preStop command runs, and waits preStopSeconds')
    t.ok(
      pod.terminationGracePeriodSeconds > 1 + config.timeouts.shutdown / 1000,
      'the grace period outlasts the wait and the drain (timeouts.shutdown) together',
    )
    const none = await chart.render(t, 'preStopSeconds 0', { values: { preStopSeconds: 0 } })
    t.equal((containerOf(none).container as { lifecycle?: unknown }).lifecycle, undefined, '0: no preStop')
  })

  t.test('cache.maxSize: derived from the volume size, or as given', async (t) => {
    const cases: [Record<string, unknown>, number | 'auto', string][] = [
      [{ persistence: { size: '500G' } }, Math.floor((500e9 * 0.9) / MiB) * MiB, '500G (decimal)'],
      [{ persistence: { size: '1.5Ti' } }, Math.floor((1.5 * 1024 * GiB * 0.9) / MiB) * MiB, '1.5Ti'],
      [{ persistence: { size: '100Mi' } }, 90 * MiB, '100Mi'],
      [{ persistence: { size: '20Gi' }, cache: { maxSizePercent: 50 } }, 10 * GiB, 'maxSizePercent 50'],
      [{ cache: { maxSize: '200GiB' } }, 200 * GiB, 'given: wins'],
      [{ persistence: { type: 'emptyDir', sizeLimit: '20Gi' } }, Math.floor((20 * GiB * 0.9) / MiB) * MiB, 'emptyDir sizeLimit 20Gi'],
      [{ persistence: { enabled: false } }, 'auto', 'emptyDir without a limit: auto'],
    ]
    for (const [values, expected, label] of cases) {
      const objects = await chart.render(t, label, { values })
      const { config, text } = await podConfig(t, objects)
      if (expected === 'auto') {
        t.match(text, /maxSize: auto/, `${label}: maxSize auto`)
        t.ok(config.cache.maxSize > 0, `${label}: the mirror measures its disk`)
      } else {
        t.equal(config.cache.maxSize, expected, `${label}: ${expected} bytes`)
      }
    }
    for (const size of ['50Gb', '10m', 'lots', '1e9']) {
      await t.rejects(
        renderText({ values: { persistence: { size } } }),
        new RegExp(`"${size}" is not a storage size`),
        `${size}: refused at render`,
      )
    }
    await t.rejects(renderText({ values: { persistence: { size: '1Mi' } } }), /too small for a cache/)
  })

  t.test('emptyDir storage: no claim, a size-limited emptyDir at /var/lib/regmirror', async (t) => {
    const objects = await chart.render(t, 'emptyDir', { values: { persistence: { type: 'emptyDir', sizeLimit: '20Gi' } } })
    const spec = statefulSetSpec(objects)
    t.equal(spec.volumeClaimTemplates, undefined, 'no volumeClaimTemplates')
    const volumes = containerOf(objects).volumes as { name: string; emptyDir?: { sizeLimit?: string } }[]
    t.same(
      volumes.find((v) => v.name === 'data'),
      { name: 'data', emptyDir: { sizeLimit: '20Gi' } },
    )
    await t.rejects(renderText({ values: { persistence: { type: 'hostPath' } } }), /persistence.type must be volumeClaim or emptyDir/)
  })

  t.test('workers: the CPU limit rounded up, else the value given', async (t) => {
    const resources = { requests: { cpu: '500m', memory: '256Mi' }, limits: { cpu: '3500m', memory: '2Gi' } }
    const limited = await chart.render(t, 'CPU limit', { values: { resources } })
    t.equal((await podConfig(t, limited)).config.server.workers, 4, 'limits.cpu 3500m: 4 workers')
    const given = await chart.render(t, 'workers given', { values: { resources, workers: 2 } })
    t.equal((await podConfig(t, given)).config.server.workers, 2)
  })

  t.test('three replicas: peers through the headless Service, a generated cluster secret kept across upgrades', async (t) => {
    const objects = await chart.render(t, 'replicas 3', { values: { replicaCount: 3 } })
    t.equal(statefulSetSpec(objects).replicas, 3)
    const { view } = await podConfig(t, objects, { podIP: '10.42.0.7' })
    t.equal(view.env.REGMIRROR_PEERS, `http://${FULLNAME}-headless.${NS}.svc.cluster.local:5000`, 'peers: the headless Service')
    t.equal(view.env.REGMIRROR_SELF, 'http://10.42.0.7:5000', 'self: the pod IP from the downward API')
    const secret = secretValue(objects, `${FULLNAME}-cluster`, 'cluster-secret')
    t.match(secret, /^[A-Za-z0-9]{32}$/, 'a generated 32-character secret')
    t.equal(view.env.REGMIRROR_CLUSTER_SECRET, secret, 'from the Secret')

    const headless = find(objects, 'Service', `${FULLNAME}-headless`).spec as {
      clusterIP: string
      selector: Record<string, string>
      ports: { port: number }[]
    }
    t.equal(headless.clusterIP, 'None')
    t.ok(selects(headless.selector, statefulSetSpec(objects).template.metadata.labels), 'the headless Service selects the replicas')
    t.same(
      headless.ports.map((p) => p.port),
      [5000],
    )
    t.match(find(objects, 'PodDisruptionBudget').spec, { maxUnavailable: 1 }, 'drains take one replica at a time')

    const upgraded = await chart.render(t, 'replicas 3, upgrade', { values: { replicaCount: 3 }, existing: [find(objects, 'Secret')] })
    t.equal(secretValue(upgraded, `${FULLNAME}-cluster`, 'cluster-secret'), secret, 'an upgrade keeps the secret (lookup)')
    const again = await chart.render(t, 'replicas 3, fresh install', { values: { replicaCount: 3 } })
    t.not(secretValue(again, `${FULLNAME}-cluster`, 'cluster-secret'), secret, 'a new install gets a new one')
    t.match(await renderText({ values: { replicaCount: 3 }, notes: true }), /WARNING: 3 replicas without Redis/)

    const own = await chart.render(t, 'cluster.existingSecret', {
      values: { replicaCount: 2, cluster: { existingSecret: 'peers', existingSecretKey: 's' } },
    })
    t.notOk(
      own.some((o) => o.kind === 'Secret'),
      'no Secret generated',
    )
    t.same(envOf(own).REGMIRROR_CLUSTER_SECRET?.valueFrom?.secretKeyRef, { name: 'peers', key: 's' })
    const single = await chart.render(t, 'cluster.enabled, 1 replica', { values: { cluster: { enabled: true } } })
    t.ok('REGMIRROR_PEERS' in envOf(single), 'cluster.enabled: peers with one replica')
  })

  t.test('bundled Redis: a Deployment with a generated password, REGMIRROR_REDIS built from it', async (t) => {
    const objects = await chart.render(t, 'bundled Redis', { values: { replicaCount: 2, redis: { bundled: { enabled: true } } } })
    const password = secretValue(objects, `${FULLNAME}-redis`, 'redis-password')
    t.match(password, /^[A-Za-z0-9]{32}$/)
    const { config } = await podConfig(t, objects)
    t.equal(
      config.metadata.redis,
      `redis://:${password}@${FULLNAME}-redis.${NS}.svc.cluster.local:6379`,
      'the mirror gets the URL with the password',
    )
    const redis = containerOf(objects, 'Deployment', `${FULLNAME}-redis`).container
    t.same(redis.args?.slice(0, 2), ['--requirepass', '$(REDIS_PASSWORD)'], 'Redis requires the password')
    t.equal(redis.env?.[0]?.valueFrom?.secretKeyRef?.name, `${FULLNAME}-redis`, 'the same Secret')
    t.same(redis.args?.slice(2), ['--save', '', '--appendonly', 'no'], 'no persistence by default')
    const svc = find(objects, 'Service', `${FULLNAME}-redis`).spec as { selector: Record<string, string> }
    const deployment = find(objects, 'Deployment').spec as { template: { metadata: { labels: Record<string, string> } } }
    t.ok(selects(svc.selector, deployment.template.metadata.labels), 'the Redis Service selects the Redis pod')
    t.notOk(selects(svc.selector, statefulSetSpec(objects).template.metadata.labels), '... and not the mirror')
    const upgraded = await chart.render(t, 'bundled Redis, upgrade', {
      values: { redis: { bundled: { enabled: true } } },
      existing: [find(objects, 'Secret', `${FULLNAME}-redis`)],
    })
    t.equal(secretValue(upgraded, `${FULLNAME}-redis`, 'redis-password'), password, 'an upgrade keeps the password')
    const persisted = await chart.render(t, 'bundled Redis with persistence', {
      values: { redis: { bundled: { enabled: true, persistence: { enabled: true } } } },
    })
    t.ok(find(persisted, 'PersistentVolumeClaim', `${FULLNAME}-redis`))
  })

  t.test('external Redis: the password from a Secret, expanded into the URL by Kubernetes', async (t) => {
    const values = {
      redis: { url: 'redis://redis.example:6379/2', username: 'mirror', existingSecret: 'redis-creds', existingSecretPasswordKey: 'pw' },
    }
    const objects = await chart.render(t, 'external Redis, existingSecret', { values })
    t.notOk(
      objects.some((o) => o.kind === 'Secret'),
      'no Secret of the chart',
    )
    const env = envOf(objects)
    t.equal(env.REGMIRROR_REDIS?.value, 'redis://mirror:$(REDIS_PASSWORD)@redis.example:6379/2', 'the spec holds only the reference')
    const { config } = await podConfig(t, objects, { secrets: { 'redis-creds': { pw: 's3cret-pw' } } })
    t.equal(config.metadata.redis, 'redis://mirror:s3cret-pw@redis.example:6379/2')

    const inline = await chart.render(t, 'external Redis, inline password', {
      values: { redis: { url: 'rediss://redis.example:6380', password: 'inline-pw' } },
    })
    t.equal(secretValue(inline, `${FULLNAME}-redis`, 'redis-password'), 'inline-pw')
    t.equal((await podConfig(t, inline)).config.metadata.redis, 'rediss://:inline-pw@redis.example:6380')
    const plain = await chart.render(t, 'external Redis, no password', { values: { redis: { url: 'redis://redis.example:6379' } } })
    t.equal((await podConfig(t, plain)).config.metadata.redis, 'redis://redis.example:6379')
    await t.rejects(renderText({ values: { redis: { url: 'redis://u:p@redis.example', password: 'x' } } }), /must not hold credentials/)
  })

  t.test('upstream credentials: from a Secret the chart makes or one of yours, as files; never in the ConfigMap', async (t) => {
    const values = {
      upstreams: [
        { name: 'ghcr.io', credentials: { username: 'bot', password: 'ghcr-inline-password' } },
        { name: 'quay.io', credentials: { token: 'quay-inline-token' } },
        {
          name: 'registry.internal:5000',
          url: 'http://10.0.0.5:5000',
          credentials: { username: 'ci', existingSecret: 'internal', passwordKey: 'pw' },
        },
        { name: 'nvcr.io', credentials: { username: '$oauthtoken', existingSecret: 'ngc', tokenKey: 'api-key' } },
        { name: 'gcr.io', deny: ['secret/**'], tagTtl: '1m' },
        {
          name: 'docker.io',
          credentials: [
            { username: 'hub-one', password: 'hub-one-password' },
            { username: 'hub-two', existingSecret: 'hub', passwordKey: 'two' },
          ],
        },
      ],
    }
    const objects = await chart.render(t, 'credentials', { values })
    const { config, text } = await podConfig(t, objects, {
      secrets: { internal: { pw: 'internal-password' }, ngc: { 'api-key': 'ngc-api-key' }, hub: { two: 'hub-two-password' } },
    })
    const creds = Object.fromEntries(config.upstreams.map((u) => [u.name, u.credentials]))
    t.same(creds['ghcr.io'], [{ username: 'bot', password: 'ghcr-inline-password' }], 'inline password, read from its file')
    t.same(creds['quay.io'], [{ token: 'quay-inline-token' }], 'inline token')
    t.same(creds['registry.internal:5000'], [{ username: 'ci', password: 'internal-password' }], 'existingSecret, passwordKey')
    t.same(creds['nvcr.io'], [{ username: '$oauthtoken', token: 'ngc-api-key' }], 'existingSecret, tokenKey')
    t.same(
      creds['docker.io'],
      [
        { username: 'hub-one', password: 'hub-one-password' },
        { username: 'hub-two', password: 'hub-two-password' },
      ],
      'a list of accounts stays a list, each from its own source',
    )
    t.same(config.upstreams.find((u) => u.name === 'gcr.io')?.deny, ['secret/**'], 'other fields pass through')
    for (const s of ['ghcr-inline-password', 'quay-inline-token', 'hub-one-password']) {
      t.notMatch(text, s, `${s} is not in the configuration file`)
    }
    t.match(text, /passwordFile: \/etc\/regmirror\/credentials\/ghcr.io\/password/)
    t.match(text, /passwordFile: \/etc\/regmirror\/credentials\/registry.internal_5000\/password/, "':' is not in a file name")
    t.match(text, /passwordFile: \/etc\/regmirror\/credentials\/docker.io\/1\/password/, 'a directory per account of a list')
    t.same(
      Object.keys(find(objects, 'Secret').data as object).sort(),
      ['docker.io.0.password', 'ghcr.io.password', 'quay.io.token'],
      'the chart’s Secret holds the inline ones',
    )

    const changed = await chart.render(t, 'credentials changed', {
      values: { upstreams: [{ ...values.upstreams[0], credentials: { username: 'bot', password: 'rotated-password' } }] },
    })
    t.not(
      statefulSetSpec(changed).template.metadata.annotations['checksum/credentials'],
      statefulSetSpec(objects).template.metadata.annotations['checksum/credentials'],
      'changed credentials restart the pods',
    )
    for (const [credentials, message] of [
      [
        { username: 'u', password: 'p', existingSecret: 's', passwordKey: 'k' },
        /inline \(password\/token\) or in existingSecret, not both/,
      ],
      [{ username: 'u', existingSecret: 's' }, /existingSecret needs passwordKey or tokenKey/],
      [{ password: 'p', token: 't' }, /a password or a token, not both/],
      [
        [
          { username: 'u', password: 'p' },
          { username: 'v', existingSecret: 's' },
        ],
        /credentials\[1\]: existingSecret needs passwordKey or tokenKey/,
      ],
    ] as const) {
      await t.rejects(renderText({ values: { upstreams: [{ name: 'ghcr.io', credentials }] } }), message)
    }
  })

  t.test('outbound proxies: per upstream in the configuration, with credentials only from a Secret', async (t) => {
    const objects = await chart.render(t, 'proxy per upstream', {
      values: { upstreams: [{ name: 'docker.io', proxy: 'http://proxy.corp:3128' }] },
    })
    const { config } = await podConfig(t, objects)
    t.match(
      config.upstreams.find((u) => u.name === 'docker.io'),
      { proxy: 'http://proxy.corp:3128' },
      "the upstream's proxy reaches the mirror",
    )
    await t.rejects(
      renderText({ values: { upstreams: [{ name: 'docker.io', proxy: 'http://bot:s3cret@proxy.corp:3128' }] } }),
      /upstreams\[0\] \(docker.io\): a proxy with credentials would be written into the ConfigMap/,
      'a password in a proxy URL is refused: the ConfigMap is no place for it',
    )
    const env = await chart.render(t, 'proxy from the environment', {
      values: {
        extraEnv: [
          { name: 'HTTPS_PROXY', valueFrom: { secretKeyRef: { name: 'corp-proxy', key: 'url' } } },
          { name: 'NO_PROXY', value: '.svc,.cluster.local' },
        ],
      },
    })
    const view = await podView(env, { secrets: { 'corp-proxy': { url: 'http://bot:s3cret@proxy.corp:3128' } } })
    t.teardown(view.close)
    t.equal(view.env.HTTPS_PROXY, 'http://bot:s3cret@proxy.corp:3128', 'HTTPS_PROXY from a Secret, through extraEnv')
  })

  t.test('client authentication: htpasswd from a Secret, anonymous networks and rules in the configuration', async (t) => {
    const line = 'alice:$2y$05$0/Lz9yPdvAf5E2jDbRYN1uaDv7lN1dHLz6.qXW8bFjMoRZr5LbVRu'
    const values = {
      auth: {
        htpasswd: { content: `${line}\n` },
        anonymous: { cidrs: ['10.0.0.0/8'] },
        rules: [{ repositories: ['docker.io/library/**'], users: ['*'] }],
      },
    }
    const objects = await chart.render(t, 'htpasswd', { values })
    const { config } = await podConfig(t, objects)
    t.ok(config.auth.htpasswd !== undefined, 'auth.htpasswd is set (REGMIRROR_HTPASSWD)')
    t.equal(readFileSync(config.auth.htpasswd!, 'utf8'), `${line}\n`, 'the mounted file holds the lines')
    t.equal(config.auth.anonymous.cidrs.length, 1)
    t.equal(config.auth.rules.length, 1)
    const volume = (containerOf(objects).volumes as { name: string; secret?: { secretName: string } }[]).find((v) => v.name === 'htpasswd')
    t.equal(volume?.secret?.secretName, `${FULLNAME}-htpasswd`)
    const mount = containerOf(objects).container.volumeMounts?.find((m) => m.name === 'htpasswd')
    t.equal(mount?.subPath, undefined, 'mounted as a directory: a changed Secret reaches the pod, and the mirror reloads it')

    const own = await chart.render(t, 'htpasswd existingSecret', {
      values: { auth: { htpasswd: { existingSecret: 'users', existingSecretKey: 'file' } } },
    })
    const { config: ownConfig } = await podConfig(t, own, { secrets: { users: { file: `${line}\n` } } })
    t.equal(readFileSync(ownConfig.auth.htpasswd!, 'utf8'), `${line}\n`, 'existingSecret: its key mounted as htpasswd')
  })

  t.test('offline, tagTtl, pins, log level, extraConfig', async (t) => {
    const objects = await chart.render(t, 'offline', {
      values: {
        offline: { enabled: true },
        tagTtl: '10m',
        log: { level: 'debug' },
        cache: { pins: ['docker.io/library/alpine:3.20'] },
        upstreams: [{ name: 'registry.internal', url: 'http://10.0.0.5:5000' }],
        extraConfig: {
          wellKnownUpstreams: false,
          retries: { attempts: 5 },
          defaultUpstream: 'registry.internal',
          cache: { touchInterval: '5m' },
        },
      },
    })
    await t.rejects(podConfig(t, objects), ConfigError, 'a pin naming docker.io with only registry.internal configured is refused')
    const fixed = await chart.render(t, 'offline, fixed pin', {
      values: {
        offline: { enabled: true },
        tagTtl: '10m',
        log: { level: 'debug' },
        cache: { pins: ['registry.internal/team/app:1'] },
        upstreams: [{ name: 'registry.internal', url: 'http://10.0.0.5:5000' }],
        extraConfig: {
          wellKnownUpstreams: false,
          retries: { attempts: 5 },
          defaultUpstream: 'registry.internal',
          cache: { touchInterval: '5m' },
        },
      },
    })
    const { config } = await podConfig(t, fixed)
    t.same(
      config.upstreams.map((u) => [u.name, u.offline, u.tagTtl]),
      [['registry.internal', true, 600_000]],
      'extraConfig wellKnownUpstreams: false (a false is merged too); offline and tagTtl reach the upstream',
    )
    t.equal(config.retries.attempts, 5)
    t.equal(config.log.level, 'debug')
    t.same(config.cache.pins, ['registry.internal/team/app:1'])
    t.equal(config.cache.touchInterval, 300_000, 'extraConfig merges into the cache section')
    t.equal(config.cache.maxSize, Math.floor((50 * GiB * 0.9) / MiB) * MiB, '... which keeps the derived maxSize')
  })

  t.test('a configuration the mirror would refuse fails here, not in the pod', async (t) => {
    const cases: [string, RenderOptions['values'], RegExp][] = [
      ['an upstream without url', { upstreams: [{ name: 'registry.internal' }] }, /upstreams\[0\]\.url: required/],
      ['an unknown key', { extraConfig: { cache: { maxsize: '1GiB' } } }, /cache\.maxsize: unknown key/],
      ['a bad duration', { tagTtl: 'soon' }, /tagTtl/],
      ['a bad log level', { log: { level: 'loud' } }, /log\.level/],
    ]
    for (const [label, values, message] of cases) {
      const objects = await chart.render(t, label, { values })
      const err = await podConfig(t, objects).then(
        () => undefined,
        (e: unknown) => e,
      )
      t.ok(err instanceof ConfigError, `${label}: refused by the mirror's loader`)
      t.match((err as ConfigError).problems.join('\n'), message, label)
    }
  })

  t.test('pod options: anti-affinity, spread, placement, annotations, extra env and volumes', async (t) => {
    const values = {
      replicaCount: 2,
      podAntiAffinity: 'hard',
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway' }],
      nodeSelector: { 'node-role/mirror': 'true' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mirror', effect: 'NoSchedule' }],
      podAnnotations: { 'example.com/team': 'platform' },
      podLabels: { team: 'platform' },
      priorityClassName: 'system-cluster-critical',
      extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=768' }],
      extraVolumes: [{ name: 'ca', configMap: { name: 'corp-ca' } }],
      extraVolumeMounts: [{ name: 'ca', mountPath: '/etc/ssl/corp', readOnly: true }],
      image: { digest: 'sha256:' + 'a'.repeat(64) },
      imagePullSecrets: [{ name: 'regcred' }],
      persistence: { storageClass: '-' },
    }
    const objects = await chart.render(t, 'pod options', { values })
    const spec = statefulSetSpec(objects)
    const pod = spec.template.spec as Record<string, unknown> & { containers: { image: string }[] }
    t.match(pod.affinity, {
      podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname' }] },
    })
    t.same(pod.topologySpreadConstraints, values.topologySpreadConstraints)
    t.same(pod.nodeSelector, values.nodeSelector)
    t.same(pod.tolerations, values.tolerations)
    t.equal(pod.priorityClassName, 'system-cluster-critical')
    t.same(pod.imagePullSecrets, [{ name: 'regcred' }])
    t.equal(pod.containers[0]!.image, `regmirror/regmirror@sha256:${'a'.repeat(64)}`, 'a digest pins the image')
    t.equal(spec.template.metadata.annotations['example.com/team'], 'platform')
    t.equal(spec.template.metadata.labels.team, 'platform')
    t.equal(envOf(objects).NODE_OPTIONS?.value, '--max-old-space-size=768')
    t.ok(containerOf(objects).container.volumeMounts?.some((m) => m.mountPath === '/etc/ssl/corp'))
    t.equal(spec.volumeClaimTemplates?.[0]?.spec.storageClassName, '', 'storageClass "-": no class')
    await t.rejects(renderText({ values: { podAntiAffinity: 'sometimes' } }), /podAntiAffinity must be soft, hard or none/)
  })

  chart.checkUnknownFields(t)
}
