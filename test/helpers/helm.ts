/**
 * The chart helm/regmirror, rendered as `helm template` renders it, by test/helm/render/main.go (Go's
 * text/template + sprig + the Helm functions the chart uses; no helm binary is to be had here). The program is
 * built on first use with Debian's Go and sprig (GOPATH mode, offline) into node_modules/.cache, keyed by its
 * source and the Go version, so each later test reuses the binary.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseAllDocuments, stringify } from 'yaml'

const run = promisify(execFile)

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const CHART_DIR = join(REPO, 'helm/regmirror')
const RENDER_SOURCE = join(REPO, 'test/helm/render/main.go')

/** The release the tests render unless told otherwise, and the base name of its objects (`<release>-<chart>`). */
export const RELEASE = 'mirror'
export const NAMESPACE = 'registry'
export const FULLNAME = 'mirror-regmirror'
const CACHE_DIR = join(REPO, 'node_modules/.cache/regmirror-helm-render')

/** A rendered Kubernetes object, with the template file it came from. */
export interface K8sObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  [field: string]: unknown
  /** Not part of the object: `regmirror/templates/<file>` (from the `# Source:` line). */
  source: string
}

export interface RenderOptions {
  /** Values coalesced over values.yaml, as `helm template -f` does (a null deletes a key). */
  values?: Record<string, unknown>
  release?: string
  namespace?: string
  /** API versions of CRDs the cluster has (`.Capabilities.APIVersions`). */
  apiVersions?: string[]
  /** Objects already in the cluster, found by `lookup` (an upgrade); else lookup finds nothing. */
  existing?: object[]
}

let building: Promise<string> | undefined

/** The renderer binary, built if this source and Go version have not been built before. */
export function renderer(): Promise<string> {
  building ??= build()
  return building
}

async function build(): Promise<string> {
  const env = { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOFLAGS: '', GOCACHE: join(CACHE_DIR, 'gocache') }
  const { stdout: version } = await run('go', ['version'], { env })
  const key = createHash('sha256').update(readFileSync(RENDER_SOURCE)).update(version).digest('hex').slice(0, 16)
  const bin = join(CACHE_DIR, `render-${key}`)
  if (existsSync(bin)) return bin
  mkdirSync(CACHE_DIR, { recursive: true })
  // Built under a name of its own and renamed: test files running at the same time may build it too.
  const partial = `${bin}.${process.pid}.partial`
  await run('go', ['build', '-o', partial, RENDER_SOURCE], { env, cwd: dirname(RENDER_SOURCE) })
  renameSync(partial, bin)
  return bin
}

/** Renders the chart; rejects with the renderer's message (Helm's `execution error at (...)` wording). */
export async function renderText(opts: RenderOptions & { notes?: boolean } = {}): Promise<string> {
  const bin = await renderer()
  const dir = await mkdtemp(join(tmpdir(), 'regmirror-helm-'))
  try {
    const args = ['-chart', CHART_DIR, '-release', opts.release ?? RELEASE, '-namespace', opts.namespace ?? NAMESPACE]
    if (opts.values !== undefined) {
      await writeFile(join(dir, 'values.yaml'), stringify(opts.values))
      args.push('-f', join(dir, 'values.yaml'))
    }
    if (opts.apiVersions !== undefined) args.push('-api-versions', opts.apiVersions.join(','))
    if (opts.existing !== undefined) {
      // As the API server returns them: in the release's namespace (the chart's objects do not name one).
      const ns = opts.namespace ?? NAMESPACE
      const inCluster = opts.existing.map((o) => {
        const { source: _source, ...rest } = o as Partial<K8sObject>
        return { ...rest, metadata: { namespace: ns, ...(rest.metadata ?? {}) } }
      })
      await writeFile(join(dir, 'existing.yaml'), inCluster.map((o) => stringify(o)).join('---\n'))
      args.push('-lookup', join(dir, 'existing.yaml'), '-upgrade')
    }
    if (opts.notes) args.push('-notes')
    try {
      return (await run(bin, args, { maxBuffer: 64 * 1024 * 1024 })).stdout
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error((e.stderr ?? '').trim() || e.message)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Renders the chart and parses every document; a document that is not valid YAML fails. */
export async function render(opts: RenderOptions = {}): Promise<K8sObject[]> {
  const text = await renderText(opts)
  const objects: K8sObject[] = []
  // YAML 1.1, as the API server's decoder reads it (go-yaml v2): `yes` and `on` are booleans there, 0440 is octal.
  for (const doc of parseAllDocuments(text, { version: '1.1', uniqueKeys: true })) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}\n${String(doc)}`)
    // `# Source: FILE` is the comment before the document's first node (or before the document).
    const comment = `${doc.commentBefore ?? ''}\n${doc.contents?.commentBefore ?? ''}`
    const source = /^ ?Source: (.+)$/m.exec(comment)?.[1] ?? '?'
    const value = doc.toJS() as K8sObject | null
    if (value !== null) objects.push({ ...value, source })
  }
  return objects
}

/** The one object of that kind (and name, if given); throws when there is none or several. */
export function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name))
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`)
  return found[0]!
}

export function kinds(objects: K8sObject[]): string[] {
  return objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()
}

/** The object without the `source` this helper adds: what would be sent to the API server. */
export function manifest(o: K8sObject): Record<string, unknown> {
  const { source: _source, ...rest } = o
  return rest
}
