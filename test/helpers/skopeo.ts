/**
 * skopeo, isolated from the host's containers configuration: every call gets a fresh temp dir holding HOME,
 * XDG_* dirs, an empty registries.conf (REGISTRIES_CONFIG_PATH / CONTAINERS_REGISTRIES_CONF), an empty auth file
 * (--authfile), an empty registries.d (--registries.d), a policy.json accepting anything (--policy), TMPDIR and
 * --tmpdir. TLS verification is off (`--*-tls-verify=false`: plain http on 127.0.0.1) unless `certDir` names a
 * directory of trusted CA certificates (`ca.crt`) for the source.
 *
 * containers/image's blob-info cache (which would let a push try cross-repo mounts of content seen elsewhere)
 * lives under /var/lib/containers/cache when running as root; `_CONTAINERS_ROOTLESS_UID` moves it into the temp dir.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import { runProgram } from './child-program.js'

export interface SkopeoCopyOptions {
  /** USER:PASSWORD for the source registry. */
  srcCreds?: string
  /** USER:PASSWORD for the destination registry. */
  destCreds?: string
  /** Copy every image of an index (`--all`). */
  all?: boolean
  /** Kept for call-site clarity: TLS verification is off unless certDir is given. */
  insecure?: boolean
  /** Verify the source's TLS certificate against the CAs in this directory (`--src-cert-dir`). */
  certDir?: string
  /** Fail rather than let skopeo rewrite a manifest (`--preserve-digests`). */
  preserveDigests?: boolean
  extraArgs?: string[]
  timeoutMs?: number
}

export interface SkopeoInspectOptions {
  creds?: string
  /** Verify TLS against the CAs in this directory (`--cert-dir`). */
  certDir?: string
  /** `--raw`: the manifest bytes exactly as the registry served them. */
  raw?: boolean
  /** `--config`: the image config instead of the manifest. */
  config?: boolean
  extraArgs?: string[]
  timeoutMs?: number
}

export interface SkopeoResult {
  stdout: string
  stderr: string
}

const ROOTLESS_UID = process.getuid?.() || 65534

async function withIsolatedSkopeo(args: (authFile: string) => string[], timeoutMs: number | undefined): Promise<SkopeoResult> {
  const dir = await makeTempDir('skopeo')
  try {
    const runDir = join(dir, 'run')
    const tmp = join(dir, 'tmp')
    const registriesD = join(dir, 'registries.d')
    await Promise.all([
      mkdir(runDir, { mode: 0o700 }),
      mkdir(tmp),
      mkdir(registriesD),
      mkdir(join(dir, 'config')),
      mkdir(join(dir, 'data')),
    ])
    await writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
    await writeFile(join(dir, 'registries.conf'), 'unqualified-search-registries = []\n')
    await writeFile(join(dir, 'auth.json'), JSON.stringify({ auths: {} }))
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: dir,
      XDG_RUNTIME_DIR: runDir,
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_DATA_HOME: join(dir, 'data'),
      TMPDIR: tmp,
      REGISTRIES_CONFIG_PATH: join(dir, 'registries.conf'),
      CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'),
      REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
      CONTAINERS_CONF: join(dir, 'containers.conf'),
      DOCKER_CONFIG: join(dir, 'docker'),
      // containers/image reads its "am I root" answer from this variable (pkg/rootless.GetRootlessEUID): non-zero
      // moves the blob-info cache from /var/lib/containers/cache to $XDG_DATA_HOME/containers/cache (our temp dir).
      _CONTAINERS_ROOTLESS_UID: String(ROOTLESS_UID),
    }
    const fullArgs = ['--policy', join(dir, 'policy.json'), '--registries.d', registriesD, '--tmpdir', tmp, ...args(join(dir, 'auth.json'))]
    return await runProgram('skopeo', fullArgs, { env, timeoutMs: timeoutMs ?? 120_000 })
  } finally {
    await removeTempDir(dir)
  }
}

/** `--X-creds U:P` when given; otherwise `--X-no-creds` for a registry (never the host's credentials). */
function credentialArgs(side: 'src' | 'dest', ref: string, creds: string | undefined): string[] {
  if (creds !== undefined) return [`--${side}-creds`, creds]
  return ref.startsWith('docker://') ? [`--${side}-no-creds`] : []
}

/** `skopeo copy SRC DEST` (full transport references: `docker://host:port/repo:tag`, `oci:/dir:tag`, `dir:/d`). */
export async function skopeoCopy(src: string, dest: string, opts: SkopeoCopyOptions = {}): Promise<SkopeoResult> {
  return withIsolatedSkopeo(
    (authFile) => [
      'copy',
      ...(opts.certDir !== undefined ? ['--src-tls-verify=true', '--src-cert-dir', opts.certDir] : ['--src-tls-verify=false']),
      '--dest-tls-verify=false',
      '--authfile',
      authFile,
      '--retry-times',
      '0',
      ...(opts.all ? ['--all'] : []),
      ...(opts.preserveDigests ? ['--preserve-digests'] : []),
      ...credentialArgs('src', src, opts.srcCreds),
      ...credentialArgs('dest', dest, opts.destCreds),
      ...(opts.extraArgs ?? []),
      src,
      dest,
    ],
    opts.timeoutMs,
  )
}

/** `skopeo inspect REF`; with `raw` the stdout is the manifest exactly as served (sha256 of it = its digest). */
export async function skopeoInspect(ref: string, opts: SkopeoInspectOptions = {}): Promise<SkopeoResult> {
  const isDocker = ref.startsWith('docker://')
  return withIsolatedSkopeo(
    (authFile) => [
      'inspect',
      '--authfile',
      authFile,
      ...(isDocker ? [...(opts.certDir !== undefined ? ['--cert-dir', opts.certDir] : ['--tls-verify=false']), '--retry-times', '0'] : []),
      ...(opts.raw ? ['--raw'] : []),
      ...(opts.config ? ['--config'] : []),
      ...(isDocker ? (opts.creds !== undefined ? ['--creds', opts.creds] : ['--no-creds']) : []),
      ...(opts.extraArgs ?? []),
      ref,
    ],
    opts.timeoutMs,
  )
}

/**
 * Push an OCI layout's tag to `registryHostPort/repo:tag` (all platforms, digests preserved, so the pushed
 * manifest/index digests equal the layout's).
 */
export async function pushLayout(
  layoutDir: string,
  tag: string,
  registryHostPort: string,
  repo: string,
  opts: { destCreds?: string; timeoutMs?: number } = {},
): Promise<SkopeoResult> {
  return skopeoCopy(`oci:${layoutDir}:${tag}`, `docker://${registryHostPort}/${repo}:${tag}`, {
    all: true,
    preserveDigests: true,
    ...(opts.destCreds !== undefined ? { destCreds: opts.destCreds } : {}),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  })
}

/** Any skopeo command (`sync`, …) in the same isolated environment as skopeoCopy, with no credentials. */
export async function skopeoRun(args: string[], timeoutMs?: number): Promise<SkopeoResult> {
  return withIsolatedSkopeo(() => args, timeoutMs)
}
