/**
 * The chart's network side, rendered as `helm template` would (test/helpers/helm.ts): the Services, the Ingress and
 * the annotations large blobs need, TLS from a Secret or from cert-manager, the ServiceMonitor, the Grafana dashboard
 * ConfigMap, the NetworkPolicy and the PodDisruptionBudget. Every object is checked against its schema; selectors
 * are checked against the labels of what they must (and must not) select.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { scenarios, selects } from '../helpers/chart-scenarios.js'
import { CHART_DIR, FULLNAME, NAMESPACE, find, renderText, type K8sObject } from '../helpers/helm.js'
import { containerOf, loadPodConfig, podView } from '../helpers/pod-view.js'
import { requireGoLibraries } from '../helpers/programs.js'

interface ServicePort {
  name: string
  port: number
  targetPort: string
  nodePort?: number
}
interface ServiceSpec {
  type: string
  clusterIP?: string
  selector: Record<string, string>
  ports: ServicePort[]
  loadBalancerIP?: string
  loadBalancerSourceRanges?: string[]
  externalTrafficPolicy?: string
}

const service = (objects: K8sObject[], name = FULLNAME) => find(objects, 'Service', name).spec as ServiceSpec
const podLabels = (objects: K8sObject[], kind = 'StatefulSet', name?: string) =>
  (find(objects, kind, name).spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels
const containerPorts = (objects: K8sObject[]) =>
  ((containerOf(objects).container as { ports?: { name: string; containerPort: number }[] }).ports ?? []).map((p) => p.name)

if (requireGoLibraries(t)) {
  const chart = scenarios()

  t.test('Service: ClusterIP by default, NodePort and LoadBalancer with their options', async (t) => {
    const objects = await chart.render(t, 'Service defaults')
    const svc = service(objects)
    t.equal(svc.type, 'ClusterIP')
    t.same(
      svc.ports.map((p) => [p.name, p.port, p.targetPort]),
      [['http', 5000, 'http']],
    )
    t.ok(selects(svc.selector, podLabels(objects)), 'selects the mirror pods')
    for (const p of svc.ports) t.ok(containerPorts(objects).includes(p.targetPort), `targetPort ${p.targetPort} is a container port`)

    const nodePort = await chart.render(t, 'NodePort', {
      values: { service: { type: 'NodePort', nodePort: 30500, externalTrafficPolicy: 'Local', clusterIP: '10.96.100.100' } },
    })
    t.match(service(nodePort), {
      type: 'NodePort',
      clusterIP: '10.96.100.100',
      externalTrafficPolicy: 'Local',
      ports: [{ nodePort: 30500 }],
    })

    const lb = await chart.render(t, 'LoadBalancer with TLS', {
      values: {
        service: {
          type: 'LoadBalancer',
          loadBalancerIP: '192.0.2.10',
          loadBalancerSourceRanges: ['192.0.2.0/24'],
          tlsNodePort: 30543,
          annotations: { 'service.beta.kubernetes.io/aws-load-balancer-internal': 'true' },
        },
        tls: { enabled: true, secretName: 'mirror-tls' },
      },
    })
    const lbSvc = service(lb)
    t.match(lbSvc, { type: 'LoadBalancer', loadBalancerIP: '192.0.2.10', loadBalancerSourceRanges: ['192.0.2.0/24'] })
    t.same(
      lbSvc.ports.map((p) => [p.name, p.port, p.nodePort]),
      [
        ['http', 5000, undefined],
        ['https', 5443, 30543],
      ],
    )
    for (const p of lbSvc.ports) t.ok(containerPorts(lb).includes(p.targetPort), `targetPort ${p.targetPort} is a container port`)
    t.equal(find(lb, 'Service', FULLNAME).metadata.annotations?.['service.beta.kubernetes.io/aws-load-balancer-internal'], 'true')

    const clusterIPWithNodePort = await chart.render(t, 'ClusterIP ignores nodePort', { values: { service: { nodePort: 30500 } } })
    t.equal(service(clusterIPWithNodePort).ports[0]!.nodePort, undefined, 'a ClusterIP Service gets no nodePort')
    await t.rejects(
      renderText({ values: { service: { type: 'ExternalName' } } }),
      /service.type must be ClusterIP, NodePort or LoadBalancer/,
    )
  })

  t.test('Ingress: the ingress-nginx annotations large blobs need, TLS, the Service as backend', async (t) => {
    const values = {
      ingress: {
        enabled: true,
        className: 'nginx',
        certManagerClusterIssuer: 'letsencrypt',
        annotations: { 'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600' },
        hosts: [{ host: 'mirror.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }],
        tls: [{ secretName: 'mirror-example-tls', hosts: ['mirror.example.com'] }],
      },
    }
    const objects = await chart.render(t, 'Ingress', { values })
    const ingress = find(objects, 'Ingress')
    t.same(
      ingress.metadata.annotations,
      {
        'nginx.ingress.kubernetes.io/proxy-body-size': '0',
        'nginx.ingress.kubernetes.io/proxy-request-buffering': 'off',
        'nginx.ingress.kubernetes.io/proxy-buffering': 'off',
        'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
        'nginx.ingress.kubernetes.io/proxy-send-timeout': '900',
        'cert-manager.io/cluster-issuer': 'letsencrypt',
      },
      'no body limit, no buffering either way, long timeouts; a value of yours wins',
    )
    const spec = ingress.spec as {
      ingressClassName: string
      tls: unknown[]
      rules: { host: string; http: { paths: { backend: { service: { name: string; port: { name: string } } } }[] } }[]
    }
    t.equal(spec.ingressClassName, 'nginx')
    t.same(spec.tls, values.ingress.tls)
    const backend = spec.rules[0]!.http.paths[0]!.backend.service
    t.equal(backend.name, FULLNAME, 'the backend is the main Service')
    t.ok(
      service(objects).ports.some((p) => p.name === backend.port.name),
      `the Service has the port ${backend.port.name}`,
    )
    t.match(await renderText({ values, notes: true }), /https:\/\/mirror\.example\.com/, 'NOTES give the Ingress address')

    const plain = await chart.render(t, 'Ingress without nginx annotations', {
      values: { ingress: { enabled: true, nginx: false, annotations: { 'haproxy.org/timeout-server': '15m' } } },
    })
    t.same(find(plain, 'Ingress').metadata.annotations, { 'haproxy.org/timeout-server': '15m' }, 'nginx: false leaves them out')
  })

  t.test('TLS on the pods: from a Secret of yours, or from a cert-manager Certificate', async (t) => {
    const objects = await chart.render(t, 'TLS from a Secret', { values: { tls: { enabled: true, secretName: 'mirror-tls' } } })
    t.same(containerPorts(objects), ['http', 'https'])
    const view = await podView(objects, { secrets: { 'mirror-tls': { 'tls.crt': 'CERTIFICATE', 'tls.key': 'KEY' } } })
    t.teardown(view.close)
    const { config } = await loadPodConfig(view)
    t.equal(readFileSync(config.server.tls.cert!, 'utf8'), 'CERTIFICATE', "server.tls.cert is the Secret's tls.crt")
    t.equal(readFileSync(config.server.tls.key!, 'utf8'), 'KEY', "server.tls.key is the Secret's tls.key")
    const https = (containerOf(objects).container as { ports?: { name: string; containerPort: number }[] }).ports?.find(
      (p) => p.name === 'https',
    )
    t.same(config.server.tls.listen, { host: '0.0.0.0', port: https?.containerPort }, 'the TLS listener is the container port https')
    const mount = containerOf(objects).container.volumeMounts?.find((m) => m.name === 'tls')
    t.equal(mount?.subPath, undefined, 'mounted as a directory: a renewed certificate reaches the pod')

    const cm = await chart.render(t, 'TLS from cert-manager', {
      values: {
        tls: {
          enabled: true,
          certManager: {
            enabled: true,
            issuerRef: { name: 'internal-ca' },
            dnsNames: ['mirror.internal'],
            ipAddresses: ['10.96.100.100'],
            duration: '2160h',
          },
        },
      },
    })
    const cert = find(cm, 'Certificate').spec as { secretName: string; dnsNames: string[]; issuerRef: { name: string; kind: string } }
    t.equal(cert.secretName, `${FULLNAME}-tls`)
    t.same(cert.issuerRef, { name: 'internal-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' })
    const svcName = `${FULLNAME}.${NAMESPACE}.svc.cluster.local`
    t.ok(cert.dnsNames.includes(svcName), "the certificate names the Service's DNS name")
    t.ok(cert.dnsNames.includes('mirror.internal'), 'and the names given')
    const volume = (containerOf(cm).volumes as { name: string; secret?: { secretName: string } }[]).find((v) => v.name === 'tls')
    t.equal(volume?.secret?.secretName, cert.secretName, 'the pods mount the Secret cert-manager writes')
    t.match(await renderText({ values: { tls: { enabled: true, secretName: 'x' } }, notes: true }), new RegExp(`https://${svcName}:5443`))

    await t.rejects(renderText({ values: { tls: { enabled: true } } }), /tls.enabled needs tls.secretName/)
    await t.rejects(
      renderText({ values: { tls: { enabled: true, certManager: { enabled: true } } } }),
      /tls.certManager.issuerRef.name is required/,
    )
  })

  t.test('ServiceMonitor: every replica once, through the main Service', async (t) => {
    const objects = await chart.render(t, 'ServiceMonitor', {
      values: {
        replicaCount: 2,
        metrics: {
          serviceMonitor: {
            enabled: true,
            labels: { release: 'kube-prometheus-stack' },
            metricRelabelings: [{ sourceLabels: ['__name__'], regex: 'regmirror_process_.*', action: 'drop' }],
          },
        },
      },
    })
    const sm = find(objects, 'ServiceMonitor')
    t.equal(sm.metadata.labels?.release, 'kube-prometheus-stack', 'the label Prometheus selects by')
    const spec = sm.spec as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] }
    const main = find(objects, 'Service', FULLNAME)
    const headless = find(objects, 'Service', `${FULLNAME}-headless`)
    t.ok(selects(spec.selector.matchLabels, main.metadata.labels), 'selects the main Service')
    t.notOk(selects(spec.selector.matchLabels, headless.metadata.labels), 'not the headless one: each pod would be scraped twice')
    t.equal(spec.endpoints[0]!.path, '/metrics')
    t.ok(
      service(objects).ports.some((p) => p.name === spec.endpoints[0]!.port),
      'its port is a port of the Service',
    )
  })

  t.test('Grafana dashboard: a ConfigMap the sidecar finds, holding the dashboard JSON', async (t) => {
    const objects = await chart.render(t, 'dashboards', {
      values: { dashboards: { enabled: true, namespace: 'monitoring', annotations: { grafana_folder: 'Registries' } } },
    })
    const cm = find(objects, 'ConfigMap', `${FULLNAME}-dashboard`)
    t.equal(cm.metadata.labels?.grafana_dashboard, '1', 'labelled for the sidecar')
    t.equal(cm.metadata.namespace, 'monitoring')
    t.equal(cm.metadata.annotations?.grafana_folder, 'Registries')
    const json = (cm.data as Record<string, string>)['regmirror.json']!
    const dashboard = JSON.parse(json) as { uid: string; panels: unknown[] }
    t.same(dashboard, JSON.parse(readFileSync(join(CHART_DIR, 'dashboards/regmirror.json'), 'utf8')), 'the chart’s dashboard, unchanged')
    t.ok(dashboard.panels.length > 10)
    t.ok(Buffer.byteLength(json) < 1024 * 1024, 'within a ConfigMap’s 1 MiB')
  })

  t.test('NetworkPolicy: clients, peers, DNS, upstreams and Redis; the bundled Redis reachable only by the mirror', async (t) => {
    const objects = await chart.render(t, 'NetworkPolicy', {
      values: {
        replicaCount: 2,
        redis: { bundled: { enabled: true } },
        tls: { enabled: true, secretName: 'mirror-tls' },
        upstreams: [{ name: 'registry.internal:5000', url: 'http://10.0.0.5:5000' }],
        networkPolicy: {
          enabled: true,
          ingress: {
            cidrs: ['10.0.0.0/16'],
            from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
          },
        },
      },
    })
    interface Rule {
      ports: { port: number; protocol: string }[]
      from?: Record<string, unknown>[]
      to?: Record<string, unknown>[]
    }
    const np = find(objects, 'NetworkPolicy', FULLNAME).spec as {
      podSelector: { matchLabels: Record<string, string> }
      ingress: Rule[]
      egress: Rule[]
    }
    const mirrorLabels = podLabels(objects)
    const redisLabels = podLabels(objects, 'Deployment')
    t.ok(selects(np.podSelector.matchLabels, mirrorLabels), 'applies to the mirror pods')
    t.notOk(selects(np.podSelector.matchLabels, redisLabels), 'not to Redis')
    const clients = np.ingress[0]!
    t.same(
      clients.ports.map((p) => p.port),
      [5000, 5443],
    )
    t.same(clients.from, [
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
      { ipBlock: { cidr: '10.0.0.0/16' } },
    ])
    const fromPods = (r: Rule, labels: Record<string, string>) =>
      (r.from ?? r.to ?? []).some((p) => selects((p.podSelector as { matchLabels?: Record<string, string> })?.matchLabels, labels))
    t.ok(
      np.ingress.some((r) => r.ports.some((p) => p.port === 5000) && fromPods(r, mirrorLabels)),
      'the peers reach each other on 5000',
    )
    t.ok(
      np.egress.some((r) => r.ports.some((p) => p.port === 5000) && fromPods(r, mirrorLabels)),
      '... in both directions',
    )
    t.ok(
      np.egress.some((r) => r.ports.some((p) => p.port === 53 && p.protocol === 'UDP')),
      'DNS',
    )
    const upstream = np.egress.find((r) => r.ports.some((p) => p.port === 443))!
    t.same(
      upstream.ports.map((p) => p.port),
      [443, 80, 5000],
      "the upstreams, with the port of an upstream's url",
    )
    t.ok(
      np.egress.some((r) => r.ports.some((p) => p.port === 6379) && fromPods(r, redisLabels)),
      'out to the bundled Redis',
    )

    const redisNp = find(objects, 'NetworkPolicy', `${FULLNAME}-redis`).spec as {
      podSelector: { matchLabels: Record<string, string> }
      ingress: Rule[]
      egress: Rule[]
    }
    t.ok(selects(redisNp.podSelector.matchLabels, redisLabels), 'a policy for Redis')
    t.notOk(selects(redisNp.podSelector.matchLabels, mirrorLabels))
    t.ok(fromPods(redisNp.ingress[0]!, mirrorLabels), 'the mirror may reach Redis')
    t.equal(redisNp.ingress.length, 1, 'and no one else')
    t.same(redisNp.egress, [], 'Redis dials nothing')

    const external = await chart.render(t, 'NetworkPolicy with an external Redis', {
      values: {
        redis: { url: 'redis://redis.example:6380' },
        networkPolicy: { enabled: true, egress: { redis: { port: 6380, to: [{ ipBlock: { cidr: '10.1.0.0/24' } }] } } },
      },
    })
    const egress = (find(external, 'NetworkPolicy').spec as { egress: Rule[] }).egress
    t.ok(
      egress.some((r) => r.ports.some((p) => p.port === 6380) && JSON.stringify(r.to) === '[{"ipBlock":{"cidr":"10.1.0.0/24"}}]'),
      'an external Redis: its port and address',
    )
    t.notOk((find(external, 'NetworkPolicy').spec as { ingress: Rule[] }).ingress[0]!.from, 'no `from` given: every client may connect')
  })

  t.test('PodDisruptionBudget: only with peers; one replica at a time, or minAvailable', async (t) => {
    const single = await chart.render(t, 'one replica, no PDB')
    t.notOk(
      single.some((o) => o.kind === 'PodDisruptionBudget'),
      'one replica: a PDB would block every node drain',
    )
    const three = await chart.render(t, 'PDB', { values: { replicaCount: 3 } })
    const pdb = find(three, 'PodDisruptionBudget').spec as { maxUnavailable?: number; selector: { matchLabels: Record<string, string> } }
    t.equal(pdb.maxUnavailable, 1)
    t.ok(selects(pdb.selector.matchLabels, podLabels(three)), 'selects the mirror pods')
    const min = await chart.render(t, 'PDB minAvailable', { values: { replicaCount: 3, podDisruptionBudget: { minAvailable: 2 } } })
    t.same(find(min, 'PodDisruptionBudget').spec, { minAvailable: 2, selector: pdb.selector })
    const off = await chart.render(t, 'PDB disabled', { values: { replicaCount: 3, podDisruptionBudget: { enabled: false } } })
    t.notOk(off.some((o) => o.kind === 'PodDisruptionBudget'))
  })

  chart.checkUnknownFields(t)
}
