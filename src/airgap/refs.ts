import { readFile } from 'node:fs/promises'
import type { Registries } from '../config/registries.js'
import type { UpstreamConfig } from '../config/schema.js'
import { isHostName, isValidDigest, isValidName, isValidTag } from '../oci/reference.js'

/** An image the tools work on: which upstream, its repository there, and a tag, a digest or both. */
export interface ImageTarget {
  up: UpstreamConfig
  /** The upstream-side name (`library/nginx` for Docker Hub's `nginx`). */
  repo: string
  tag?: string
  digest?: string
  /** The full reference, `UPSTREAM/REPO:TAG[@DIGEST]`: how the tools name it, and the archive's ref.name. */
  ref: string
}

/**
 * Reads a reference as `docker pull` would, against the configured upstreams: `nginx:1.27` and
 * `library/nginx` are the default upstream's (Docker Hub's `library/` applied), `ghcr.io/owner/app:1.0`
 * names an upstream by its name or registry host, `quay.io/x/y@sha256:…` pins a digest. No tag and
 * no digest means `latest`. Throws with the reason when it is not a reference or names no upstream.
 */
export function parseTarget(text: string, registries: Registries): ImageTarget {
  const raw = text.trim()
  let rest = raw
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!isValidDigest(digest)) throw new Error(`${raw}: not a sha256 digest after '@'`)
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!isValidTag(tag)) throw new Error(`${raw}: invalid tag ${JSON.stringify(tag)}`)
  }
  const slash = rest.indexOf('/')
  const first = slash === -1 ? '' : rest.slice(0, slash)
  // As Docker reads it: a first component with a dot, a port or `localhost` is a registry; so is
  // the name of a configured upstream. Anything else is a repository of the default upstream.
  let up = first ? registries.byName(first) : undefined
  let name = up ? rest.slice(slash + 1) : rest
  if (!up) {
    if (first && isHostName(first) && (first.includes('.') || first.includes(':') || first === 'localhost')) {
      throw new Error(`${raw}: no upstream named ${first} is configured (add it under upstreams:)`)
    }
    up = registries.defaultUpstream
    name = rest
  }
  if (!isValidName(name)) throw new Error(`${raw}: invalid repository name ${JSON.stringify(name)}`)
  const repo = registries.normalizeRepo(up, name)
  if (tag === undefined && digest === undefined) tag = 'latest'
  return { up, repo, tag, digest, ref: formatRef(up.name, repo, tag, digest) }
}

export function formatRef(upstream: string, repo: string, tag?: string, digest?: string): string {
  return `${upstream}/${repo}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`
}

/** References from the command line and from `--file` (one a line; blank lines and `#` comments skipped). */
export async function readTargets(
  args: string[],
  files: string[],
  registries: Registries,
): Promise<{ targets: ImageTarget[]; problems: string[] }> {
  const texts: { text: string; where: string }[] = args.map((a) => ({ text: a, where: 'argument' }))
  for (const f of files) {
    const body = f === '-' ? await readStdin() : await readFile(f, 'utf8')
    body.split('\n').forEach((line, i) => {
      const text = line.replace(/#.*$/, '').trim()
      if (text) texts.push({ text, where: `${f === '-' ? 'stdin' : f}:${i + 1}` })
    })
  }
  const targets: ImageTarget[] = []
  const problems: string[] = []
  const seen = new Set<string>()
  for (const { text, where } of texts) {
    try {
      const t = parseTarget(text, registries)
      if (seen.has(t.ref)) continue
      seen.add(t.ref)
      targets.push(t)
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`)
    }
  }
  return { targets, problems }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
