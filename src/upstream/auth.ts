import { isIP } from 'node:net'

export interface Challenge {
  scheme: string // lower-cased: 'bearer' | 'basic' | ...
  params: Record<string, string>
}

/**
 * Parses a WWW-Authenticate header (RFC 9110 §11.6.1): `Bearer realm="…",service="…",scope="…"`.
 * Quoted values may contain commas (scopes like `repository:a:pull,push`), so this is a small
 * tokenizer rather than a split.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return []
  const input = Array.isArray(header) ? header.join(', ') : header
  const out: Challenge[] = []
  let i = 0
  const n = input.length
  const skipWs = () => {
    while (i < n && (input[i] === ' ' || input[i] === '\t' || input[i] === ',')) i++
  }
  const readToken = () => {
    const start = i
    while (i < n && /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(input[i] as string)) i++
    return input.slice(start, i)
  }
  let current: Challenge | undefined
  while (i < n) {
    skipWs()
    if (i >= n) break
    const save = i
    const token = readToken()
    if (token === '') {
      i++
      continue
    }
    let j = i
    while (j < n && (input[j] === ' ' || input[j] === '\t')) j++
    if (input[j] === '=' && current) {
      // auth-param
      i = j + 1
      while (i < n && (input[i] === ' ' || input[i] === '\t')) i++
      let value = ''
      if (input[i] === '"') {
        i++
        while (i < n && input[i] !== '"') {
          if (input[i] === '\\' && i + 1 < n) i++
          value += input[i]
          i++
        }
        i++ // closing quote
      } else {
        const start = i
        while (i < n && input[i] !== ',') i++
        value = input.slice(start, i).trim()
      }
      current.params[token.toLowerCase()] = value
    } else {
      i = save + token.length
      current = { scheme: token.toLowerCase(), params: {} }
      out.push(current)
    }
  }
  return out
}

/**
 * The registrable domain, approximated as the last two labels, or three when the second-level
 * label is a generic one under a country code (`example.co.uk`). Good enough to tell
 * `auth.docker.io` belongs with `registry-1.docker.io` and `evil.example` does not; anything
 * else an operator lists explicitly in `realms`.
 */
export function registrableDomain(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '')
  if (isIP(h) || !h.includes('.')) return h
  const labels = h.split('.')
  const n = labels.length
  if (
    n >= 3 &&
    (labels[n - 1] as string).length === 2 &&
    ['co', 'com', 'net', 'org', 'gov', 'ac', 'edu'].includes(labels[n - 2] as string)
  ) {
    return labels.slice(-3).join('.')
  }
  return labels.slice(-2).join('.')
}

/**
 * Whether this upstream may use a token realm. The realm must be listed in `realms`, or be on
 * the upstream's own host, or on another host of its registrable domain (`auth.docker.io` for
 * `registry-1.docker.io`). On the upstream's own host the rule is "same server": when the token
 * request carries the upstream's credentials, scheme and port must match too, so they never
 * reach another service on another port of the same machine.
 */
export function realmAllowed(upstreamUrl: string, realm: string, extra: readonly string[], withCredentials = true): boolean {
  let realmUrl: URL
  try {
    realmUrl = new URL(realm)
  } catch {
    return false
  }
  if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') return false
  const up = new URL(upstreamUrl)
  // A plain-http upstream may use a plain-http realm (labs, tests); an https upstream may not
  // be downgraded to send credentials in the clear.
  if (up.protocol === 'https:' && realmUrl.protocol !== 'https:') return false
  const host = realmUrl.hostname.toLowerCase()
  if (extra.some((h) => h.toLowerCase() === host || h.toLowerCase() === realmUrl.host.toLowerCase())) return true
  if (host === up.hostname.toLowerCase()) return !withCredentials || realmUrl.origin === up.origin
  // An address or a single-label name has no domain to share with anything but itself.
  if (isIP(host.replace(/^\[|\]$/g, '')) !== 0 || !host.includes('.')) return false
  return registrableDomain(host) === registrableDomain(up.hostname)
}
