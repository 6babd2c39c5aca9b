/**
 * The shape of a setting's declaration, and what is derived generically from a table of them: the resolved
 * TypeScript type, the zod schema of the file, the parsed defaults. The tables are in settings.ts (top
 * level and sections) and upstreams.ts (fields of one upstream entry).
 */
import { z } from 'zod'
import type { SchemaContext, ValueType } from './values.js'

/** What a setting's resolve() may consult. */
export interface ResolveContext {
  /** Base for relative paths. */
  readonly cwd: string
  /** The resolved value of a setting declared before this one (settings resolve in table order). */
  get(path: string): unknown
  /** What the environment, then the flags, gave for a setting with its own `overlay` type, each parsed. */
  readonly overlays: readonly unknown[]
}

export interface Declaration<T = unknown, R = T> {
  /** Its kind of value (values.ts): how the file, the environment and flags give it, how the docs name it. */
  readonly type: ValueType<T>
  /** The docs' Meaning column (markdown). */
  readonly doc: string
  /** A shorter meaning for `--help`; default `doc`. */
  readonly help?: string
  /** The default, written as in the file (`'5m'`, `16384`, `[]`); parsed by `type`. */
  readonly default?: unknown
  /** The docs' Default column, where `default` alone does not say it. */
  readonly docDefault?: string
  /** Environment variable; an empty value counts as unset. */
  readonly env?: string
  /** Command-line flag without `--`; a list's flag is repeatable. */
  readonly flag?: string
  /** The flag's value as `--help` shows it: `DURATION`, `HOST:PORT`. */
  readonly arg?: string
  /** For a list: the environment's and the flags' elements are added to the file's, not put in their place. */
  readonly append?: true
  /** What the environment and flags give, when not a `type`: resolve() then merges it, from ctx.overlays. */
  readonly overlay?: ValueType<unknown>
  /** The file must give it. */
  readonly required?: true
  /** Absent from the resolved object when not given (there is no default). */
  readonly optional?: true
  /** Not in the resolved object: its value is used in resolving the named setting instead. */
  readonly resolvedInto?: string
  /** For a `resolvedInto` setting: the value `config check` prints, so that its output loads back the same. */
  readonly shownAs?: unknown
  /** For a field of an upstream: the top-level setting whose value is its default. */
  readonly inherits?: string
  /** The resolved value, when it is not the merged value itself. Method syntax: a table holds many T. */
  resolve?(v: T, ctx: ResolveContext): R
}

export type Table = Readonly<Record<string, Declaration>>

/** Declares one setting of value type `type`; `o` keeps its literal types, from which Config is derived. */
export function setting<T, const O extends Omit<Declaration<T, unknown>, 'type'>>(
  type: ValueType<T>,
  o: O,
): O & { readonly type: ValueType<T> } {
  return { ...o, type }
}

// ---------------------------------------------------------------------------------------------------------------
// The resolved type of a table: `{ 'cache.maxSize': setting(sizeOrAuto, { resolve(): number }) }` gives
// `{ cache: { maxSize: number } }`.

type ResolvedValue<D> = D extends { resolve(v: never, ctx: never): infer R } ? R : D extends { type: ValueType<infer T> } ? T : never

declare const optionalMark: unique symbol
type Optional<V> = { readonly [optionalMark]: V }

/** path → resolved value type, leaving out `resolvedInto` settings and marking `optional` ones. */
type Leaves<Tb> = {
  [P in keyof Tb & string as Tb[P] extends { resolvedInto: string } ? never : P]: Tb[P] extends { optional: true }
    ? Optional<ResolvedValue<Tb[P]>>
    : ResolvedValue<Tb[P]>
}

type Head<P> = P extends `${infer H}.${string}` ? H : P
type Rest<P, H extends string> = P extends `${H}.${infer R}` ? R : never
type Child<M, H extends string> = H extends keyof M ? M[H] : Nest<{ [P in keyof M & string as Rest<P, H>]: M[P] }>
type Simplify<T> = { [K in keyof T]: T[K] } & {}

type Nest<M> = Simplify<
  { [H in Head<keyof M & string> as Child<M, H> extends Optional<unknown> ? never : H]: Child<M, H> } & {
    [H in Head<keyof M & string> as Child<M, H> extends Optional<unknown> ? H : never]?: Child<M, H> extends Optional<infer V> ? V : never
  }
>

/** The resolved object a table declares, nested by the dots of its paths. */
export type Resolved<Tb> = Nest<Leaves<Tb>>

// ---------------------------------------------------------------------------------------------------------------
// Runtime helpers

export function entries(t: Table): [string, Declaration][] {
  return Object.entries(t)
}

/** Whether the environment gives it as a comma-separated list and its flag is repeatable. */
export function isList(d: Declaration): boolean {
  return (d.overlay ?? d.type).element !== undefined
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function getPath(o: unknown, path: string): unknown {
  let cur = o
  for (const k of path.split('.')) cur = isRecord(cur) ? cur[k] : undefined
  return cur
}

export function setPath(o: Record<string, unknown>, path: string, v: unknown): void {
  const keys = path.split('.')
  let cur = o
  for (const k of keys.slice(0, -1)) {
    if (!isRecord(cur[k])) cur[k] = {}
    cur = cur[k] as Record<string, unknown>
  }
  cur[keys.at(-1)!] = v
}

/** Secrets are never defaults, so parsing a default needs no environment. */
const NO_SECRETS: SchemaContext = { env: {}, cwd: '/' }
const defaults = new WeakMap<Declaration, unknown>()

/** The parsed default (a fresh copy: resolved objects never share a list), undefined when there is none. */
export function defaultOf(d: Declaration): unknown {
  if (d.default === undefined) return undefined
  if (!defaults.has(d)) {
    const r = d.type.schema(NO_SECRETS).safeParse(d.default)
    if (!r.success) throw new Error(`internal: default ${JSON.stringify(d.default)} is not a ${d.type.doc}`)
    defaults.set(d, r.data)
  }
  return structuredClone(defaults.get(d))
}

/** The strict zod object of a table; dotted paths become nested mappings, in the order they first appear. */
export function objectSchema(t: Table, sc: SchemaContext): z.ZodType<Record<string, unknown>> {
  const shape: Record<string, z.ZodType> = {}
  const sections = new Map<string, [string, Declaration][]>()
  for (const [path, d] of entries(t)) {
    const dot = path.indexOf('.')
    if (dot < 0) {
      shape[path] = d.required ? d.type.schema(sc) : d.type.schema(sc).optional()
      continue
    }
    const head = path.slice(0, dot)
    if (!sections.has(head)) {
      sections.set(head, [])
      shape[head] = z.never() // placeholder keeps the key's place in the order
    }
    sections.get(head)!.push([path.slice(dot + 1), d])
  }
  for (const [head, sub] of sections) shape[head] = objectSchema(Object.fromEntries(sub), sc).optional()
  return z.strictObject(shape)
}
