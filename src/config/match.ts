/**
 * Glob matching for repository allow/deny lists and tag TTL rules.
 *
 * Glob syntax: `*` matches any run of characters except `/`, `**` matches anything (including `/`),
 * `?` matches one character except `/`; everything else is literal. Matching is case-sensitive and anchored.
 */

/** Tags that look like versions: `1`, `1.2`, `v1.2.3`, `1.2.3-alpine`, `v2.0.0-rc.1`. */
export const SEMVER_TAG = /^v?\d+(\.\d+){0,2}(-[0-9A-Za-z][0-9A-Za-z._-]*)?$/

const cache = new Map<string, RegExp>()

export function globToRegExp(glob: string): RegExp {
  let re = cache.get(glob)
  if (re) return re
  let src = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*') {
      if (glob[i + 1] === '*') {
        src += '.*'
        i++
      } else {
        src += '[^/]*'
      }
    } else if (c === '?') {
      src += '[^/]'
    } else {
      src += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
  }
  re = new RegExp(`^${src}$`, 's')
  if (cache.size > 1000) cache.clear()
  cache.set(glob, re)
  return re
}

export function globMatch(glob: string, s: string): boolean {
  return globToRegExp(glob).test(s)
}

/**
 * Whether a TTL rule pattern matches. `semver` matches version-like tags; a pattern containing ':' is matched
 * against `repo:tag`, otherwise against the tag alone.
 */
export function ttlPatternMatches(pattern: string, repo: string, tag: string): boolean {
  if (pattern === 'semver') return SEMVER_TAG.test(tag)
  if (pattern.includes(':')) return globMatch(pattern, `${repo}:${tag}`)
  return globMatch(pattern, tag)
}

/**
 * The freshness lifetime (ms) of a tag in `repo` (the upstream-side name, e.g. `library/nginx` on docker.io):
 * the first matching `tagTtlRules` entry wins, else the upstream's `tagTtl`.
 */
export function ttlFor(
  upstream: { tagTtl: number; tagTtlRules: readonly { pattern: string; ttl: number }[] },
  repo: string,
  tag: string,
): number {
  for (const rule of upstream.tagTtlRules) {
    if (ttlPatternMatches(rule.pattern, repo, tag)) return rule.ttl
  }
  return upstream.tagTtl
}

/**
 * Whether `repo` (upstream-side name, e.g. `library/nginx`) may be pulled through this upstream:
 * denied if any `deny` glob matches; otherwise allowed if `allow` is empty or any `allow` glob matches.
 */
export function repoAllowed(upstream: { allow: readonly string[]; deny: readonly string[] }, repo: string): boolean {
  if (upstream.deny.some((g) => globMatch(g, repo))) return false
  return upstream.allow.length === 0 || upstream.allow.some((g) => globMatch(g, repo))
}
