/**
 * Parsers of the configuration's values written as text (in the file, an environment variable or a flag).
 * Each throws Error(message), the message being the problem reported after the value's place.
 */
import { BlockList } from 'node:net'
import { addNetwork } from '../cidr.js'
import { isHostName, parseImageRef } from '../oci/reference.js'

/** Parses 'HOST:PORT', '[::]:5000', ':5000' (= 0.0.0.0) or a bare port. */
export function parseListen(v: string | number): { host: string; port: number } {
  const bad = (why = 'must be HOST:PORT, [IPv6]:PORT or :PORT'): Error => new Error(`${why}, got ${JSON.stringify(v)}`)
  let host: string
  let portStr: string
  const s = String(v).trim()
  if (/^\d+$/.test(s)) {
    host = '0.0.0.0'
    portStr = s
  } else if (s.startsWith('[')) {
    const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s)
    if (!m) throw bad()
    host = m[1]!
    portStr = m[2]!
  } else {
    const i = s.lastIndexOf(':')
    if (i < 0) throw bad()
    host = s.slice(0, i) || '0.0.0.0'
    portStr = s.slice(i + 1)
    if (host.includes(':') || !/^[A-Za-z0-9.-]+$/.test(host)) throw bad()
  }
  if (!/^\d+$/.test(portStr)) throw bad()
  const port = Number(portStr)
  if (port > 65535) throw bad('port must be 0-65535')
  return { host, port }
}

/**
 * A text about a URL with any `user:password@` replaced, for messages: whatever was typed where a
 * URL belongs is never echoed with its secret, valid URL or not.
 */
export function redactUserinfo(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s"]*@/gi, '$1[REDACTED]@')
}

/** Validates a network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address. */
export function parseNetwork(v: string): string {
  addNetwork(new BlockList(), v)
  return v.trim()
}

/** Validates an http(s) base URL and returns it without trailing slashes. */
export function parseHttpUrl(v: string): string {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new Error('must be an http or https URL')
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('must be an http or https URL')
  if (u.username || u.password) throw new Error('must not contain credentials (use credentials: instead)')
  if (u.search || u.hash) throw new Error('must not have a query or fragment')
  return u.href.replace(/\/+$/, '')
}

/** What an upstream's `proxy` may be: a proxy URL, or `none` to go direct whatever the environment says. */
export const PROXY_SCHEMES = ['http:', 'https:', 'socks5:', 'socks5h:'] as const

/**
 * Validates an outbound proxy: `none`, or `http://`, `https://`, `socks5://` (or `socks5h://`, the same: names are
 * always resolved by the proxy) with a host, an optional port and optional `user:password@`. Messages never echo
 * the value: it may hold a password.
 */
export function parseProxy(v: string): string {
  const s = v.trim()
  if (s === 'none') return s
  const bad = (why: string): Error =>
    new Error(`must be none or a proxy URL (http://, https:// or socks5://[user:password@]host:port): ${why}`)
  let u: URL
  try {
    u = new URL(s)
  } catch {
    throw bad('not a URL')
  }
  if (!(PROXY_SCHEMES as readonly string[]).includes(u.protocol)) throw bad(`scheme ${u.protocol.slice(0, 20)} is not supported`)
  if (u.hostname === '') throw bad('no host')
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) throw bad('no path, query or fragment allowed')
  if (u.password && !u.username) throw bad('a password needs a user name')
  return `${u.protocol}//${u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : ''}${u.host}`
}

/** Validates a redis:// or rediss:// URL (returned unchanged). */
export function parseRedisUrl(v: string): string {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new Error('must be a redis:// or rediss:// URL')
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error('must be a redis:// or rediss:// URL')
  return v
}

export const UPSTREAM_NAME_RE = /^[a-z0-9][a-z0-9.-]*(:[0-9]+)?$/

export function parseUpstreamName(v: string): string {
  if (!UPSTREAM_NAME_RE.test(v)) {
    throw new Error(`not a valid upstream name: ${JSON.stringify(v)} (lower-case letters, digits, '.', '-', optional :port)`)
  }
  return v
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export function parseLogLevel(v: string): LogLevel {
  const l = v.trim().toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(l)) {
    throw new Error(`must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(v)}`)
  }
  return l as LogLevel
}

/** `NAME=URL` as used by --upstream and REGMIRROR_UPSTREAMS. */
export function parseUpstreamAssignment(v: string): { name: string; url: string } {
  const i = v.indexOf('=')
  if (i <= 0 || v.slice(0, i).includes('//')) throw new Error(`must be NAME=URL, got ${JSON.stringify(redactUserinfo(v))}`)
  const name = parseUpstreamName(v.slice(0, i).trim())
  let url: string
  try {
    url = parseHttpUrl(v.slice(i + 1).trim())
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`)
  }
  return { name, url }
}

/** A fully qualified image reference `UPSTREAM/REPO:TAG`, `UPSTREAM/REPO@sha256:…` or both. Returns the upstream name. */
export function parsePinRef(v: string): { upstream: string; ref: string } {
  const r = parseImageRef(v)
  if (!r) throw new Error(`not an image reference UPSTREAM/REPO:TAG or UPSTREAM/REPO@sha256:DIGEST: ${JSON.stringify(v)}`)
  return { upstream: r.registry, ref: v }
}

export function parseHostName(v: string): string {
  const h = v.trim().toLowerCase()
  if (!isHostName(h)) throw new Error(`not a host name: ${JSON.stringify(v)}`)
  return h
}

export function parseBoolean(v: string): boolean {
  const b = v.trim().toLowerCase()
  if (b !== 'true' && b !== 'false') throw new Error(`must be true or false, got ${JSON.stringify(v)}`)
  return b === 'true'
}
