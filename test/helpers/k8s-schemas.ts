/**
 * Is a rendered object something the API server would accept? Three checks, all offline:
 *
 * 1. The Kubernetes OpenAPI schema (kubernetes-models: each kind's `validate()`, generated from the Kubernetes
 *    1.33 OpenAPI document): types, required fields, enums, int32/int64, quantities. It lets unknown fields
 *    through, which the API server (and `helm install`, which validates strictly) does not, so:
 * 2. Unknown fields: the objects are type-checked by TypeScript against kubernetes-models' interfaces (generated
 *    from the same document), whose excess-property check names every field the schema does not have, at any
 *    depth (`readinesProbe` in a container, `sizelimit` in an emptyDir).
 * 3. A few rules the API server enforces beyond the schema: object, label, port and data key names.
 *
 * Custom resources (prometheus-operator's ServiceMonitor, cert-manager's Certificate) are in no core schema:
 * they are checked against CRD_SCHEMAS below, strict zod schemas written from the fields the CRDs document
 * (only those this chart may use: a field outside them is an error too).
 */
import ts from 'typescript'
import { z } from 'zod'
import { DaemonSet, Deployment, StatefulSet } from 'kubernetes-models/apps/v1'
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1'
import { REPO, manifest, type K8sObject } from './helm.js'

interface ModelClass {
  new (data: never): { validate(): void }
}

/** The kinds the chart renders: their model class and where TypeScript finds their interface. */
const CORE: Record<string, { model: ModelClass; module: string; type: string }> = {
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1', type: 'IConfigMap' },
  'v1/Secret': { model: Secret, module: 'kubernetes-models/v1', type: 'ISecret' },
  'v1/Service': { model: Service, module: 'kubernetes-models/v1', type: 'IService' },
  'v1/ServiceAccount': { model: ServiceAccount, module: 'kubernetes-models/v1', type: 'IServiceAccount' },
  'v1/PersistentVolumeClaim': { model: PersistentVolumeClaim, module: 'kubernetes-models/v1', type: 'IPersistentVolumeClaim' },
  'apps/v1/StatefulSet': { model: StatefulSet, module: 'kubernetes-models/apps/v1', type: 'IStatefulSet' },
  'apps/v1/Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1', type: 'IDeployment' },
  'apps/v1/DaemonSet': { model: DaemonSet, module: 'kubernetes-models/apps/v1', type: 'IDaemonSet' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, module: 'kubernetes-models/policy/v1', type: 'IPodDisruptionBudget' },
  'networking.k8s.io/v1/Ingress': { model: Ingress, module: 'kubernetes-models/networking.k8s.io/v1', type: 'IIngress' },
  'networking.k8s.io/v1/NetworkPolicy': { model: NetworkPolicy, module: 'kubernetes-models/networking.k8s.io/v1', type: 'INetworkPolicy' },
}

// --- custom resources ---------------------------------------------------------------------------------------

const labelMap = z.record(z.string(), z.string())
const crMetadata = z.strictObject({
  name: z.string(),
  namespace: z.string().optional(),
  labels: labelMap.optional(),
  annotations: labelMap.optional(),
})
const labelSelector = z.strictObject({
  matchLabels: labelMap.optional(),
  matchExpressions: z
    .array(
      z.strictObject({
        key: z.string(),
        operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
        values: z.array(z.string()).optional(),
      }),
    )
    .optional(),
})
/** prometheus-operator's Duration: `30s`, `1m30s`, `0`. */
const promDuration = z.string().regex(/^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/)
const relabelConfig = z.strictObject({
  sourceLabels: z.array(z.string()).optional(),
  separator: z.string().optional(),
  targetLabel: z.string().optional(),
  regex: z.string().optional(),
  modulus: z.number().int().optional(),
  replacement: z.string().optional(),
  action: z
    .enum(['replace', 'keep', 'drop', 'hashmod', 'labelmap', 'labeldrop', 'labelkeep', 'lowercase', 'uppercase', 'keepequal', 'dropequal'])
    .optional(),
})

/**
 * ServiceMonitor, monitoring.coreos.com/v1 (prometheus-operator's API reference: ServiceMonitorSpec, Endpoint,
 * NamespaceSelector, RelabelConfig); Certificate, cert-manager.io/v1 (cert-manager's API reference:
 * CertificateSpec, ObjectReference, CertificatePrivateKey). Required fields as the CRDs mark them.
 */
export const CRD_SCHEMAS: Record<string, z.ZodType> = {
  'monitoring.coreos.com/v1/ServiceMonitor': z.strictObject({
    apiVersion: z.literal('monitoring.coreos.com/v1'),
    kind: z.literal('ServiceMonitor'),
    metadata: crMetadata,
    spec: z.strictObject({
      selector: labelSelector,
      namespaceSelector: z.strictObject({ any: z.boolean().optional(), matchNames: z.array(z.string()).optional() }).optional(),
      jobLabel: z.string().optional(),
      targetLabels: z.array(z.string()).optional(),
      podTargetLabels: z.array(z.string()).optional(),
      endpoints: z.array(
        z.strictObject({
          port: z.string().optional(),
          targetPort: z.union([z.string(), z.number().int()]).optional(),
          path: z.string().optional(),
          scheme: z.enum(['http', 'https']).optional(),
          interval: promDuration.optional(),
          scrapeTimeout: promDuration.optional(),
          honorLabels: z.boolean().optional(),
          relabelings: z.array(relabelConfig).optional(),
          metricRelabelings: z.array(relabelConfig).optional(),
        }),
      ),
    }),
  }),
  'cert-manager.io/v1/Certificate': z.strictObject({
    apiVersion: z.literal('cert-manager.io/v1'),
    kind: z.literal('Certificate'),
    metadata: crMetadata,
    spec: z.strictObject({
      secretName: z.string().min(1),
      issuerRef: z.strictObject({ name: z.string().min(1), kind: z.string().optional(), group: z.string().optional() }),
      commonName: z.string().optional(),
      dnsNames: z.array(z.string()).optional(),
      ipAddresses: z.array(z.string()).optional(),
      // A Go duration (time.ParseDuration), e.g. 2160h, 90m.
      duration: z
        .string()
        .regex(/^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/)
        .optional(),
      renewBefore: z
        .string()
        .regex(/^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/)
        .optional(),
      usages: z.array(z.string()).optional(),
      privateKey: z
        .strictObject({
          algorithm: z.enum(['RSA', 'ECDSA', 'Ed25519']).optional(),
          encoding: z.enum(['PKCS1', 'PKCS8']).optional(),
          size: z.number().int().optional(),
          rotationPolicy: z.enum(['Never', 'Always']).optional(),
        })
        .optional(),
    }),
  }),
}

// --- the API server's naming rules --------------------------------------------------------------------------

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const DATA_KEY = /^[-._a-zA-Z0-9]+$/
const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/

function labelProblems(where: string, labels: Record<string, unknown> | undefined, valuesToo: boolean): string[] {
  const out: string[] = []
  for (const [key, value] of Object.entries(labels ?? {})) {
    const [prefix, name] = key.includes('/') ? key.split('/', 2) : [undefined, key]
    const keyOk =
      (prefix === undefined || (prefix.length <= 253 && DNS1123_SUBDOMAIN.test(prefix))) && name!.length <= 63 && LABEL_NAME.test(name!)
    if (!keyOk) out.push(`${where}: invalid key ${JSON.stringify(key)}`)
    if (valuesToo && (typeof value !== 'string' || value.length > 63 || (value !== '' && !LABEL_NAME.test(value)))) {
      out.push(`${where}: invalid value ${JSON.stringify(value)} of ${key}`)
    }
  }
  return out
}

function namingProblems(o: K8sObject): string[] {
  const out: string[] = []
  const name = o.metadata.name
  // Services need a DNS-1035 label (it becomes a DNS name); most other kinds a DNS-1123 subdomain.
  if (o.kind === 'Service' ? !DNS1035_LABEL.test(name) || name.length > 63 : !DNS1123_SUBDOMAIN.test(name) || name.length > 253) {
    out.push(`metadata.name: ${JSON.stringify(name)} is not a valid ${o.kind} name`)
  }
  out.push(
    ...labelProblems('metadata.labels', o.metadata.labels, true),
    ...labelProblems('metadata.annotations', o.metadata.annotations, false),
  )
  if (o.kind === 'ConfigMap' || o.kind === 'Secret') {
    for (const key of Object.keys({ ...(o.data as object), ...(o.stringData as object) })) {
      if (!DATA_KEY.test(key) || key.length > 253) out.push(`data: invalid key ${JSON.stringify(key)}`)
    }
  }
  const pod = (o.spec as { template?: { metadata?: { labels?: Record<string, unknown> }; spec?: PodLike } } | undefined)?.template
  if (pod !== undefined) {
    out.push(...labelProblems('spec.template.metadata.labels', pod.metadata?.labels, true))
    for (const c of [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])]) {
      if (!DNS1123_LABEL.test(c.name)) out.push(`container name ${JSON.stringify(c.name)} is invalid`)
      for (const p of c.ports ?? []) {
        if (p.name !== undefined && (p.name.length > 15 || !PORT_NAME.test(p.name) || !/[a-z]/.test(p.name))) {
          out.push(`container ${c.name}: port name ${JSON.stringify(p.name)} is invalid (IANA_SVC_NAME, at most 15 characters)`)
        }
      }
    }
  }
  return out
}

interface PodLike {
  containers?: { name: string; ports?: { name?: string }[] }[]
  initContainers?: { name: string; ports?: { name?: string }[] }[]
}

/** Problems of one object against its schema and the naming rules; [] when the API server would take it. */
export function schemaProblems(o: K8sObject): string[] {
  const id = `${o.apiVersion}/${o.kind}`
  const body = manifest(o)
  const core = CORE[id]
  const problems: string[] = []
  if (core !== undefined) {
    try {
      new core.model(body as never).validate()
    } catch (err) {
      problems.push((err as Error).message)
    }
  } else if (CRD_SCHEMAS[id] !== undefined) {
    const r = CRD_SCHEMAS[id].safeParse(body)
    if (!r.success) problems.push(...r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`))
  } else {
    problems.push(`no schema for ${id}: add it to test/helpers/k8s-schemas.ts`)
  }
  return [...problems, ...namingProblems(o)].map((p) => `${o.kind}/${o.metadata.name} (${o.source}): ${p}`)
}

/**
 * Fields the Kubernetes schema does not have, in any of the objects: TypeScript checks each one as a literal of its
 * kind's interface. One program for all of them (a few seconds), so callers collect objects and call this once.
 */
export function unknownFieldProblems(objects: { label: string; object: K8sObject }[]): string[] {
  const core = objects.filter((e) => CORE[`${e.object.apiVersion}/${e.object.kind}`] !== undefined)
  const file = `${REPO}/test/__rendered_objects__.ts`
  const imports = [...new Set(core.map((e) => CORE[`${e.object.apiVersion}/${e.object.kind}`]!))]
  let text = imports.map((c) => `import type { ${c.type} } from '${c.module}'\n`).join('')
  const starts: number[] = []
  core.forEach((e, i) => {
    starts.push(text.length)
    const c = CORE[`${e.object.apiVersion}/${e.object.kind}`]!
    text += `export const o${i}: ${c.type} = ${JSON.stringify(manifest(e.object), null, 1)}\n`
  })
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  const fileExists = host.fileExists.bind(host)
  host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, text, lang) : getSourceFile(name, lang, ...rest))
  host.fileExists = (name) => name === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ')
    if (d.file?.fileName !== file || d.start === undefined) return message
    let i = starts.length - 1
    while (i > 0 && starts[i]! > d.start) i--
    const e = core[i]!
    // The line of the offending field, as a path hint: the JSON above is one field per line.
    const line = text.slice(text.lastIndexOf('\n', d.start) + 1, text.indexOf('\n', d.start)).trim()
    return `${e.label}: ${e.object.kind}/${e.object.metadata.name} (${e.object.source}): ${message} [at ${line}]`
  })
}
