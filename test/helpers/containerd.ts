/**
 * A test-owned containerd (1.6) serving only what `ctr content fetch` / `ctr images pull --local`-style content
 * operations need: content store, metadata, images, leases, namespaces. Root, state and the unix sockets live in a
 * temp dir; CRI, the task runtimes, cgroup monitoring and every snapshotter except `native` are disabled, and no
 * TCP listener (debug/metrics) is configured.
 *
 * Registry traffic is made by `ctr` itself (the client), not by the daemon: hosts.toml dirs and proxy variables
 * apply to the ctr process. ctr gets HTTP(S)_PROXY removed and NO_PROXY=127.0.0.1,localhost.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import { runProgram, startProgram, waitUntilReady, type ChildProgram } from './child-program.js'
import type { TestContext } from './test-context.js'

export interface CtrOptions {
  /**
   * `--hosts-dir DIR`, inserted after the first two args (the subcommand, e.g. `content fetch`), where ctr's
   * registry flags belong.
   */
  hostsDir?: string
  timeoutMs?: number
}

export interface Containerd {
  /** The gRPC unix socket (`ctr --address`). */
  address: string
  root: string
  namespace: string
  /** Run `ctr --address SOCK --namespace NS ...args`; rejects with stderr on a non-zero exit. */
  ctr(args: string[], opts?: CtrOptions): Promise<{ stdout: string; stderr: string }>
  output(): string
  stop(): Promise<void>
}

const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.overlayfs',
  'io.containerd.runtime.v1.linux',
  'io.containerd.runtime.v2.task',
  'io.containerd.monitor.v1.cgroups',
  'io.containerd.service.v1.tasks-service',
  'io.containerd.grpc.v1.tasks',
  'io.containerd.internal.v1.restart',
  'io.containerd.internal.v1.opt',
]

function ctrEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(https?|all|no)_proxy$/i.test(key) || key.startsWith('CONTAINERD_')) continue
    env[key] = value
  }
  env.HOME = home
  env.NO_PROXY = '127.0.0.1,localhost'
  env.no_proxy = '127.0.0.1,localhost'
  return env
}

export async function startContainerd(opts: { t?: TestContext; namespace?: string } = {}): Promise<Containerd> {
  const dir = await makeTempDir('containerd')
  const root = join(dir, 'root')
  const state = join(dir, 'state')
  const address = join(dir, 'containerd.sock')
  const namespace = opts.namespace ?? 'regmirror-e2e'
  let program: ChildProgram | undefined
  const cleanup = async (): Promise<void> => {
    await program?.stop()
    await removeTempDir(dir)
  }
  try {
    await mkdir(root)
    await mkdir(state)
    const configPath = join(dir, 'config.toml')
    await writeFile(
      configPath,
      [
        'version = 2',
        `root = ${JSON.stringify(root)}`,
        `state = ${JSON.stringify(state)}`,
        `disabled_plugins = ${JSON.stringify(DISABLED_PLUGINS)}`,
        '[grpc]',
        `  address = ${JSON.stringify(address)}`,
        '[ttrpc]',
        `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
        '[debug]',
        '  address = ""',
        '[metrics]',
        '  address = ""',
        '',
      ].join('\n'),
    )
    const env = ctrEnv(dir)
    program = startProgram('containerd', 'containerd', ['--config', configPath, '--log-level', 'info'], { env, cwd: dir })
    const ctr = async (args: string[], ctrOpts: CtrOptions = {}): Promise<{ stdout: string; stderr: string }> => {
      const full = ctrOpts.hostsDir === undefined ? args : [...args.slice(0, 2), '--hosts-dir', ctrOpts.hostsDir, ...args.slice(2)]
      return runProgram('ctr', ['--address', address, '--namespace', namespace, ...full], {
        env,
        timeoutMs: ctrOpts.timeoutMs ?? 120_000,
      })
    }
    await waitUntilReady(program, async () => {
      await ctr(['version'], { timeoutMs: 5000 })
      return true
    })
    let stopped: Promise<void> | undefined
    const stop = (): Promise<void> => (stopped ??= cleanup())
    opts.t?.teardown(stop)
    const running = program
    return { address, root, namespace, ctr, output: () => running.output(), stop }
  } catch (err) {
    await cleanup()
    throw err
  }
}

export interface HostsTomlOptions {
  /**
   * The `server` line: where containerd goes when no mirror answers. Default: `https://registry-1.docker.io` for
   * docker.io, else `https://<registry>`. `null` leaves it out.
   */
  server?: string | null
  capabilities?: string[]
  /** A CA certificate file the mirror's TLS certificate is checked against (else verification is skipped). */
  ca?: string
}

/**
 * Write `<dir>/<registry>/hosts.toml` making `mirrorUrl` (plain http) a mirror for `registry` (e.g. `docker.io`,
 * `127.0.0.1:5000`). containerd 1.6 looks up `<dir>/<host>_<port>_/` first, then `<dir>/<host:port>/`, then
 * `<dir>/_default/`. The mirror gets `?ns=<registry>` on every request (it is not the registry's own host).
 * Returns the path of the file written.
 */
export async function writeHostsToml(dir: string, registry: string, mirrorUrl: string, opts: HostsTomlOptions = {}): Promise<string> {
  const server =
    opts.server === undefined ? (registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`) : opts.server
  const capabilities = opts.capabilities ?? ['pull', 'resolve']
  const lines = [
    ...(server !== null ? [`server = ${JSON.stringify(server)}`, ''] : []),
    `[host.${JSON.stringify(mirrorUrl)}]`,
    `  capabilities = ${JSON.stringify(capabilities)}`,
    ...(opts.ca !== undefined ? [`  ca = ${JSON.stringify(opts.ca)}`] : ['  skip_verify = true']),
    '',
  ]
  const hostDir = join(dir, registry)
  await mkdir(hostDir, { recursive: true })
  const file = join(hostDir, 'hosts.toml')
  await writeFile(file, lines.join('\n'))
  return file
}
