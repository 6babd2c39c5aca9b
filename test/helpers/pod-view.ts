/**
 * What the mirror container of a rendered StatefulSet would see, built from the rendered objects the way the
 * kubelet builds it: its environment (secretKeyRef, configMapKeyRef, fieldRef and resourceFieldRef resolved, `$(VAR)` expanded as
 * Kubernetes expands it) and the files of its ConfigMap, Secret and projected volumes, written under a temp
 * directory that stands for `/`. loadPodConfig then runs the project's own loadConfig on that, as `regmirror
 * serve` does at start: a configuration the mirror would refuse fails the test.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { loadConfig, type Config } from '../../src/config/load.js'
import type { K8sObject } from './helm.js'

export interface EnvVar {
  name: string
  value?: string
  valueFrom?: {
    secretKeyRef?: { name: string; key: string }
    configMapKeyRef?: { name: string; key: string }
    fieldRef?: { fieldPath: string }
    resourceFieldRef?: { resource: string; divisor?: string | number }
  }
}
type Quantities = Record<string, string | number>
interface KeyToPath {
  key: string
  path: string
}
interface Volume {
  name: string
  configMap?: { name: string; items?: KeyToPath[] }
  secret?: { secretName: string; items?: KeyToPath[] }
  projected?: { sources: { secret?: { name: string; items?: KeyToPath[] }; configMap?: { name: string; items?: KeyToPath[] } }[] }
  emptyDir?: object
  hostPath?: { path: string }
  persistentVolumeClaim?: object
}
export interface Container {
  name: string
  image?: string
  command?: string[]
  args?: string[]
  env?: EnvVar[]
  volumeMounts?: { name: string; mountPath: string; subPath?: string }[]
  resources?: { limits?: Quantities; requests?: Quantities }
}

export interface PodView {
  /** The container's environment, paths under its mounts moved under `root`. */
  env: Record<string, string>
  /** Stands for the container's `/`. */
  root: string
  /** Where a path of the container is here: under `root` when a volume is mounted there, else unchanged. */
  path(containerPath: string): string
  /** The pod's spec, for the assertions. */
  container: Container
  close(): Promise<void>
}

export interface PodViewOptions {
  /** Secrets that exist in the cluster before the chart (existingSecret values): name → key → plain value. */
  secrets?: Record<string, Record<string, string>>
  podIP?: string
  /** The pod of this workload; default: the StatefulSet. */
  workload?: { kind: string; name?: string }
  /** The variables the kubelet defines before the container's own (service links: `<SVC>_SERVICE_HOST`, ...). */
  serviceLinks?: Record<string, string>
}

/** The pod template's first container of the workload (StatefulSet by default). */
export function containerOf(objects: K8sObject[], kind = 'StatefulSet', name?: string): { container: Container; volumes: Volume[] } {
  const w = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name))
  if (w === undefined) throw new Error(`no ${kind} rendered`)
  const spec = (w.spec as { template: { spec: { containers: Container[]; volumes?: Volume[] } } }).template.spec
  return { container: spec.containers[0]!, volumes: spec.volumes ?? [] }
}

export async function podView(objects: K8sObject[], opts: PodViewOptions = {}): Promise<PodView> {
  const { container, volumes } = containerOf(objects, opts.workload?.kind, opts.workload?.name)
  const dataOf = (kind: 'Secret' | 'ConfigMap', name: string): Record<string, string> => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name)
    if (o !== undefined) {
      const data = (o.data ?? {}) as Record<string, string>
      if (kind === 'ConfigMap') return data
      return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]))
    }
    const external = kind === 'Secret' ? opts.secrets?.[name] : undefined
    if (external === undefined) throw new Error(`the pod refers to ${kind} ${name}, which is neither rendered nor given as existing`)
    return external
  }
  const valueOf = (kind: 'Secret' | 'ConfigMap', name: string, key: string): string => {
    const v = dataOf(kind, name)[key]
    if (v === undefined) throw new Error(`${kind} ${name} has no key ${key}`)
    return v
  }

  const root = await mkdtemp(join(tmpdir(), 'regmirror-pod-'))
  const mounts = [...(container.volumeMounts ?? [])].sort((a, b) => b.mountPath.length - a.mountPath.length)
  // Files of one volume: path inside the volume → content.
  const filesOf = (v: Volume): Record<string, string> | undefined => {
    const pick = (data: Record<string, string>, items: KeyToPath[] | undefined): Record<string, string> =>
      items === undefined ? data : Object.fromEntries(items.map((i) => [i.path, data[i.key] ?? missing(i.key)]))
    const missing = (key: string): never => {
      throw new Error(`volume ${v.name}: key ${key} is not in its source`)
    }
    if (v.configMap) return pick(dataOf('ConfigMap', v.configMap.name), v.configMap.items)
    if (v.secret) return pick(dataOf('Secret', v.secret.secretName), v.secret.items)
    if (v.projected) {
      const out: Record<string, string> = {}
      for (const s of v.projected.sources) {
        if (s.secret) Object.assign(out, pick(dataOf('Secret', s.secret.name), s.secret.items))
        if (s.configMap) Object.assign(out, pick(dataOf('ConfigMap', s.configMap.name), s.configMap.items))
      }
      return out
    }
    return undefined // emptyDir, a volume claim, a host directory: an empty directory
  }
  for (const m of container.volumeMounts ?? []) {
    const v = volumes.find((x) => x.name === m.name)
    if (v === undefined && m.name !== 'data') throw new Error(`volumeMount ${m.name} has no volume`)
    const files = v === undefined ? undefined : filesOf(v)
    const at = join(root, m.mountPath)
    if (m.subPath !== undefined) {
      const content = files?.[m.subPath]
      if (content === undefined) throw new Error(`volumeMount ${m.name}: subPath ${m.subPath} is not in the volume`)
      await mkdir(dirname(at), { recursive: true })
      await writeFile(at, content)
      continue
    }
    await mkdir(at, { recursive: true })
    for (const [path, content] of Object.entries(files ?? {})) {
      await mkdir(dirname(join(at, path)), { recursive: true })
      await writeFile(join(at, path), content)
    }
  }
  const reroot = (value: string): string => {
    const m = mounts.find((x) => value === x.mountPath || value.startsWith(`${x.mountPath}/`))
    return m === undefined ? value : join(root, value)
  }

  const env: Record<string, string> = { ...opts.serviceLinks }
  for (const e of container.env ?? []) {
    let value: string
    if (e.value !== undefined) value = expand(e.value, env)
    else if (e.valueFrom?.secretKeyRef) value = valueOf('Secret', e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key)
    else if (e.valueFrom?.configMapKeyRef) value = valueOf('ConfigMap', e.valueFrom.configMapKeyRef.name, e.valueFrom.configMapKeyRef.key)
    else if (e.valueFrom?.fieldRef?.fieldPath === 'status.podIP') value = opts.podIP ?? '10.1.2.3'
    else if (e.valueFrom?.resourceFieldRef) value = resourceField(container, e.valueFrom.resourceFieldRef)
    else throw new Error(`env ${e.name}: no value this helper can resolve`)
    env[e.name] = value
  }
  const rerooted = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, reroot(v)]))
  return { env: rerooted, root, path: reroot, container, close: () => rm(root, { recursive: true, force: true }) }
}

/**
 * Kubernetes' `$(VAR)` expansion: a variable defined earlier in the list is replaced, `$$` escapes, anything
 * else is left as written (the container then sees `$(VAR)` literally).
 */
export function expand(value: string, defined: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name: string | undefined) =>
    name === undefined ? '$' : (defined[name] ?? whole),
  )
}

/**
 * The configuration the mirror would start with in this pod: REGMIRROR_CONFIG read from the mounted ConfigMap,
 * its absolute paths under the pod's mounts (credentials files) moved under the view's root, then the project's
 * loadConfig with the container's environment. Throws ConfigError when the mirror would refuse to start.
 */
export async function loadPodConfig(view: PodView): Promise<{ config: Config; text: string }> {
  const file = view.env.REGMIRROR_CONFIG
  if (file === undefined) throw new Error('the container has no REGMIRROR_CONFIG')
  const text = await readFile(file, 'utf8')
  const mountPaths = (view.container.volumeMounts ?? []).map((m) => m.mountPath).sort((a, b) => b.length - a.length)
  // One pass, so a path already moved is not moved again (the root is itself under /tmp, a mount too).
  const escaped = mountPaths.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  const rerooted = text.replace(
    new RegExp(`(^|[\\s"':])(${escaped.join('|')})/`, 'gm'),
    (_m, before: string, p: string) => `${before}${join(view.root, p)}/`,
  )
  const moved = join(view.root, 'regmirror-rerooted.yaml')
  await writeFile(moved, rerooted)
  const config = await loadConfig({ env: { ...view.env, REGMIRROR_CONFIG: moved }, cwd: view.root })
  return { config, text }
}

/** CPU quantities as Kubernetes writes them: `2`, `1.5`, `250m`. */
function cpuCores(q: string | number): number {
  const text = String(q)
  return text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text)
}

/**
 * A container's `limits.cpu` or `requests.cpu` as the downward API gives it: divided by the divisor and rounded up.
 * The kubelet would give the node's allocatable CPUs for a limit that is not set; the chart never asks for one then.
 */
function resourceField(container: Container, ref: { resource: string; divisor?: string | number }): string {
  const [kind, name] = ref.resource.split('.') as ['limits' | 'requests', string]
  const q = container.resources?.[kind]?.[name]
  if (name !== 'cpu' || q === undefined) throw new Error(`resourceFieldRef ${ref.resource}: not set on the container`)
  return String(Math.ceil(cpuCores(q) / cpuCores(ref.divisor ?? 1)))
}
