/**
 * Endpoint pools: the places one upstream registry can be reached, in trust order. The fields of one
 * `endpoints:` entry are declared here (like the upstream fields in upstreams.ts), and `endpointsOf` gives
 * every upstream's resolved pool, whichever of `url`, `urls` or `endpoints` configured it.
 *
 * What a path on an endpoint URL means (docs/configuration.md, "Endpoint pools"):
 * - in `urls` and `endpoints[].url` it is a registry-name prefix, put after `/v2/`: another mirror that
 *   takes the registry as the first name component (`https://m.daocloud.io/docker.io` asks for
 *   `/v2/docker.io/library/nginx/...`). A `/v2` segment in the path splits it: the part before is the API's
 *   base (`https://art.example/api/docker/hub/v2`), the part after the prefix.
 * - in `url` (one endpoint, as before pools existed) it is the API's base: `/v2/` is appended to it.
 */
import { z } from 'zod'
import { credentials, type Credentials } from './credentials.js'
import { entries, objectSchema, setting, type Resolved } from './declare.js'
import { parseHttpUrl } from './parse.js'
import * as v from './values.js'
import type { SchemaContext, ValueType } from './values.js'

export const ENDPOINT_FIELDS = {
  url: setting(v.httpUrl, {
    required: true,
    doc: 'where to reach the registry; a path is a registry-name prefix (`https://m.daocloud.io/docker.io`), see above',
  }),
  credentials: setting(credentials, {
    optional: true,
    docDefault: 'none',
    doc: "this endpoint's own credentials (an endpoint never gets another's); see [Credentials](#credentials)",
  }),
  trusted: setting(v.boolean, {
    default: true,
    doc: '`false`: its tags are used only when no trusted endpoint answers (logged and counted); digests are verified whoever sends them',
  }),
  realms: setting(v.listOf(v.hostName, { unique: true }), {
    optional: true,
    docDefault: "the upstream's `realms`",
    doc: 'extra token realm hosts for this endpoint, besides its own registrable domain',
  }),
  allowedNetworks: setting(v.listOf(v.network, { unique: true }), {
    optional: true,
    docDefault: "the upstream's `allowedNetworks`",
    doc: "address ranges this endpoint's redirect targets and token realm may reach although they are not public",
  }),
  proxy: setting(v.proxy, {
    optional: true,
    docDefault: "the upstream's `proxy`",
    doc: 'the outbound proxy for this endpoint (see the upstream field `proxy`); `none` goes direct',
  }),
} as const

/** One endpoint as the file gives it. */
type EndpointEntry = Resolved<typeof ENDPOINT_FIELDS>

/** One resolved endpoint: inherited fields filled in. */
export interface EndpointConfig {
  url: string
  credentials?: Credentials[]
  trusted: boolean
  realms: string[]
  allowedNetworks: string[]
  proxy?: string
}

const endpointEntry: ValueType<EndpointEntry> = {
  doc: 'mapping',
  schema: (sc: SchemaContext) => objectSchema(ENDPOINT_FIELDS, sc) as unknown as z.ZodType<EndpointEntry>,
  format: (e) => {
    const out: Record<string, unknown> = {}
    for (const [k, d] of entries(ENDPOINT_FIELDS)) {
      const x = (e as Record<string, unknown>)[k]
      if (x !== undefined && !(Array.isArray(x) && x.length === 0)) out[k] = d.type.format(x)
    }
    return out
  },
  redact: (e) => ({
    ...e,
    ...(e.credentials === undefined ? {} : { credentials: credentials.redact!(e.credentials) }),
    ...(e.proxy === undefined ? {} : { proxy: v.proxy.redact!(e.proxy) }),
  }),
}

/**
 * The `endpoints:` field's value type; at least one. The file gives EndpointEntry; the resolved upstream holds
 * EndpointConfig (resolvePool fills in what an entry inherits), which is what the type says.
 */
export const endpointList = {
  ...v.listOf(endpointEntry),
  schema: (sc: SchemaContext) => z.array(endpointEntry.schema(sc)).min(1, { error: 'must list at least one endpoint' }),
} as unknown as ValueType<EndpointConfig[]>

/** The `urls:` field's value type; at least one. */
export const urlList: ValueType<string[]> = {
  ...v.listOf(v.httpUrl, { unique: true }),
  schema: (sc) => z.array(v.httpUrl.schema(sc)).min(1, { error: 'must list at least one URL' }),
}

/** What the upstream resolution knows when it builds a pool. */
type PoolSource = { url?: unknown; urls?: unknown; endpoints?: unknown }

/**
 * The `endpoints` of a resolved upstream from the one source (flags, environment, file entry or built-in)
 * that configured where it is: `urls` become endpoints with the upstream's realms and allowed networks;
 * `url` alone gives no `endpoints` (see endpointsOf).
 */
export function resolvePool(
  source: PoolSource | undefined,
  inherited: { realms: string[]; allowedNetworks: string[] },
): { url: string; endpoints?: EndpointConfig[] } | undefined {
  if (!source) return undefined
  const list: EndpointEntry[] | undefined = Array.isArray(source.endpoints)
    ? (source.endpoints as EndpointEntry[])
    : Array.isArray(source.urls)
      ? (source.urls as string[]).map((url) => ({ url, trusted: true }))
      : undefined
  if (list === undefined) return typeof source.url === 'string' ? { url: source.url } : undefined
  const endpoints = list.map((e): EndpointConfig => ({
    url: e.url,
    ...(e.credentials !== undefined ? { credentials: structuredClone(e.credentials) } : {}),
    trusted: e.trusted ?? true,
    realms: [...(e.realms ?? inherited.realms)],
    allowedNetworks: [...(e.allowedNetworks ?? inherited.allowedNetworks)],
  }))
  return { url: endpoints[0]!.url, endpoints }
}

/** The fields of an upstream an endpoint pool is built from. */
export interface PoolOf {
  url: string
  endpoints?: EndpointConfig[]
  credentials?: Credentials[]
  realms: string[]
  allowedNetworks: string[]
}

/** Where an endpoint's requests go: the API's base URL (`/v2/` follows) and the name prefix after `/v2/`. */
export interface EndpointTarget {
  base: string
  prefix: string
}

export interface ResolvedEndpoint extends EndpointConfig, EndpointTarget {
  /** Origin and path, never credentials: how logs and metrics name it. */
  label: string
}

/** Every endpoint of an upstream, in trust order; an upstream configured by `url` has one. */
export function endpointsOf(up: PoolOf): ResolvedEndpoint[] {
  if (up.endpoints === undefined) {
    const one: EndpointConfig = {
      url: up.url,
      ...(up.credentials !== undefined ? { credentials: up.credentials } : {}),
      trusted: true,
      realms: up.realms,
      allowedNetworks: up.allowedNetworks,
    }
    return [{ ...one, base: up.url, prefix: '', label: up.url }]
  }
  return up.endpoints.map((e) => ({ ...e, ...endpointTarget(e.url), label: e.url }))
}

/** Splits a pool URL's path (see the file's comment): `https://h/a/v2/docker.io` → base `https://h/a`, prefix `docker.io/`. */
export function endpointTarget(url: string): EndpointTarget {
  const u = new URL(parseHttpUrl(url))
  const segments = u.pathname.split('/').filter((s) => s !== '')
  const v2 = segments.lastIndexOf('v2')
  const base = v2 < 0 ? [] : segments.slice(0, v2)
  const prefix = v2 < 0 ? segments : segments.slice(v2 + 1)
  return {
    base: u.origin + (base.length > 0 ? `/${base.join('/')}` : ''),
    prefix: prefix.length > 0 ? `${prefix.join('/')}/` : '',
  }
}
