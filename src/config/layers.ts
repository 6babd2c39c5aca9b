/**
 * The layers above the file (environment variables, then flags) and how the layers combine into the
 * resolved Config: flags > environment > file > default, per setting, as its declaration says.
 */
import { flagKey, type CliFlags } from './args.js'
import { defaultOf, entries, getPath, isList, setPath, type Declaration } from './declare.js'
import { SETTINGS, type Config } from './settings.js'
import type { ValueType } from './values.js'

export type Env = Record<string, string | undefined>

/** A layer's valid values by setting path (lists: the valid elements). */
export type Layer = Map<string, unknown>

export function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim()
}

/** Runs `fn`; a failure is a problem named `where`. */
function attempt(where: string, problems: string[], fn: () => void): void {
  try {
    fn()
  } catch (e) {
    problems.push(`${where}: ${(e as Error).message}`)
  }
}

/** Parses each element; a failing element is a problem and is left out, the others stay. */
function parseEach(items: readonly string[], element: ValueType<unknown>, where: string, problems: string[]): unknown[] {
  const out: unknown[] = []
  for (const s of items) attempt(where, problems, () => out.push(element.parse!(s)))
  return out
}

function layerType(d: Declaration): ValueType<unknown> {
  return d.overlay ?? d.type
}

/** Values from `REGMIRROR_*` variables: trimmed, empty = unset, lists comma-separated. */
export function envLayer(env: Env, problems: string[]): Layer {
  const layer: Layer = new Map()
  for (const [path, d] of entries(SETTINGS)) {
    if (d.env === undefined) continue
    const t = layerType(d)
    if (t.element) {
      const items = (env[d.env] ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
      if (items.length > 0) layer.set(path, parseEach(items, t.element, d.env, problems))
    } else {
      const s = nonEmpty(env[d.env])
      if (s !== undefined) attempt(d.env, problems, () => layer.set(path, t.parse!(s)))
    }
  }
  return layer
}

/** Values from flags, as given (not trimmed); a list's flag is repeated. */
export function flagLayer(flags: CliFlags, problems: string[]): Layer {
  const layer: Layer = new Map()
  for (const [path, d] of entries(SETTINGS)) {
    if (d.flag === undefined) continue
    const v = (flags as Record<string, unknown>)[flagKey(d.flag)]
    if (v === undefined) continue
    const t = layerType(d)
    const where = `--${d.flag}`
    if (t.element) layer.set(path, parseEach(v as string[], t.element, where, problems))
    else attempt(where, problems, () => layer.set(path, t.parse!(v as string)))
  }
  return layer
}

function listIn(layer: Layer, path: string): unknown[] {
  return (layer.get(path) as unknown[] | undefined) ?? []
}

/** The value the layers give a setting, before its resolve(). */
function merged(path: string, d: Declaration, file: unknown, env: Layer, flags: Layer): unknown {
  const inFile = getPath(file, path)
  if (d.overlay) return inFile ?? defaultOf(d) // resolve() merges the overlays
  if (d.append) return [...new Set([...((inFile ?? defaultOf(d)) as unknown[]), ...listIn(env, path), ...listIn(flags, path)])]
  return flags.get(path) ?? env.get(path) ?? inFile ?? defaultOf(d)
}

/** The resolved Config from the parsed file and the valid values of the layers above it. */
export function resolveLayers(file: unknown, env: Layer, flags: Layer, cwd: string): Config {
  const resolved = new Map<string, unknown>()
  const config: Record<string, unknown> = {}
  for (const [path, d] of entries(SETTINGS)) {
    let value = merged(path, d, file, env, flags)
    if (d.resolve) {
      const get = (p: string): unknown => {
        if (!resolved.has(p)) throw new Error(`internal: ${path} reads ${p}, which is not declared before it`)
        return resolved.get(p)
      }
      const given = [env.get(path), flags.get(path)].filter((x) => x !== undefined)
      const overlays = isList(d) ? given.flat() : given
      value = d.resolve(value, { cwd, get, overlays })
    }
    resolved.set(path, value)
    if (d.resolvedInto === undefined && !(value === undefined && d.optional)) setPath(config, path, value)
  }
  return config as Config
}
