/**
 * The base image for regmirror's Dockerfile where no registry but npm's and Debian's can be reached, as on the test
 * machines: scripts/node-base.sh assembles a stand-in for node:24-slim as a root filesystem tar, and `docker import`
 * makes it an image. debootstrap takes from half a minute to a few, so the tar is kept in .cache/node-base/ under a
 * hash of the script and of the CA bundle it copies in: a change to either builds a new one, and a clean clone (CI)
 * builds it once for all its test runs.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runProgram } from './child-program.js'
import type { Dockerd } from './dockerd.js'
import type { TestContext } from './test-context.js'

export const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '../../..')
const SCRIPT = join(REPO_ROOT, 'scripts', 'node-base.sh')
const CACHE_DIR = join(REPO_ROOT, '.cache', 'node-base')
const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

/** The image configuration scripts/node-base.sh's header gives to `docker import --change`. */
const IMAGE_CONFIG = [
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  `ENV NODE_EXTRA_CA_CERTS=${HOST_CA_BUNDLE}`,
  'CMD ["node"]',
]

async function cacheKey(): Promise<string> {
  const hash = createHash('sha256').update(await readFile(SCRIPT))
  hash.update(await readFile(HOST_CA_BUNDLE).catch(() => Buffer.alloc(0)))
  return hash.digest('hex').slice(0, 16)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Removes the tars of other keys (200 MB each) and what killed builds left; another build in progress stays. */
async function pruneCache(keep: string): Promise<void> {
  for (const name of await readdir(CACHE_DIR)) {
    if (name === keep) continue
    const pid = /\.(\d+)\.partial/.exec(name)?.[1]
    if (pid !== undefined && alive(Number(pid))) continue
    await rm(join(CACHE_DIR, name), { recursive: true, force: true })
  }
}

/** The path of the base's root filesystem tar, built by scripts/node-base.sh unless the cache has it. */
export async function nodeBaseTar(t?: TestContext): Promise<{ tar: string; key: string; builtMs?: number }> {
  const key = await cacheKey()
  const tar = join(CACHE_DIR, `${key}.tar`)
  if (existsSync(tar)) return { tar, key }
  await mkdir(CACHE_DIR, { recursive: true })
  // Each build writes its own file and renames it into place, so two test processes cannot interleave a tar.
  const partial = join(CACHE_DIR, `${key}.${process.pid}.partial`)
  const started = Date.now()
  t?.comment(`node base: building ${tar} with scripts/node-base.sh (not cached for this script)`)
  try {
    await runProgram('bash', [SCRIPT, partial], { timeoutMs: 15 * 60_000 })
    await rename(partial, tar)
  } finally {
    await rm(partial, { force: true })
    await rm(`${partial}.partial`, { force: true })
  }
  await pruneCache(`${key}.tar`)
  return { tar, key, builtMs: Date.now() - started }
}

/** Imports the base into `daemon` and returns its image name, for `docker build --build-arg BASE=...`. */
export async function importNodeBase(daemon: Dockerd, t?: TestContext): Promise<string> {
  const { tar, key, builtMs } = await nodeBaseTar(t)
  if (builtMs !== undefined) t?.comment(`node base: built in ${(builtMs / 1000).toFixed(1)} s`)
  const name = `regmirror-node-base:${key}`
  await daemon.docker(['import', ...IMAGE_CONFIG.flatMap((c) => ['--change', c]), tar, name], { timeoutMs: 5 * 60_000 })
  return name
}
