/**
 * A test-owned Docker daemon (Debian's docker.io, dockerd 20.10) configured the way users configure theirs: a
 * daemon.json with `registry-mirrors`. Everything it owns lives in a temp dir: data root, exec root, pid file, the
 * API socket and its managed containerd (own namespaces). No networking is set up (no bridge, no iptables): a
 * container that runs needs `--network host`. The storage driver is vfs unless the test asks for another: vfs works
 * on any filesystem, and the tests that only pull never pay for its full copy of each layer; one that builds and
 * runs images asks for overlay2, several times faster there.
 *
 * The docker client on PATH talks to it through DOCKER_HOST; DOCKER_CONFIG points at an empty dir so no
 * credentials from the machine are used.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runProgram, startProgram, waitUntilReady, type ChildProgram } from './child-program.js'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import type { TestContext } from './test-context.js'

export interface Dockerd {
  /** Run `docker ...args` against this daemon; rejects with stderr on a non-zero exit. */
  docker(args: string[], opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<{ stdout: string; stderr: string }>
  output(): string
  stop(): Promise<void>
}

/**
 * Once a container has run, dockerd leaves the bind mount of its network namespace (exec/netns/default) behind when
 * it exits, and the directory cannot be removed while it is mounted.
 */
async function unmountUnder(dir: string): Promise<void> {
  const mountPoints = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`))
  for (const m of mountPoints.sort().reverse()) await runProgram('umount', ['--lazy', m]).catch(() => undefined)
}

export async function startDockerd(opts: {
  t?: TestContext
  daemonJson: Record<string, unknown>
  storageDriver?: 'vfs' | 'overlay2'
}): Promise<Dockerd> {
  const dir = await makeTempDir('dockerd')
  let program: ChildProgram | undefined
  const cleanup = async (): Promise<void> => {
    await program?.stop(10_000)
    await unmountUnder(dir)
    await removeTempDir(dir)
  }
  try {
    const socket = join(dir, 'docker.sock')
    const configFile = join(dir, 'daemon.json')
    await writeFile(configFile, JSON.stringify(opts.daemonJson, null, 2))
    await mkdir(join(dir, 'client'))
    const env: NodeJS.ProcessEnv = {}
    for (const [key, value] of Object.entries(process.env)) {
      if (/^(https?|all|no)_proxy$/i.test(key) || key.startsWith('DOCKER_')) continue
      env[key] = value
    }
    env.NO_PROXY = '127.0.0.1,localhost'
    env.no_proxy = '127.0.0.1,localhost'
    const id = dir.slice(-6).replace(/[^A-Za-z0-9]/g, 'x')
    program = startProgram(
      'dockerd',
      'dockerd',
      [
        '--config-file',
        configFile,
        '--data-root',
        join(dir, 'data'),
        '--exec-root',
        join(dir, 'exec'),
        '--pidfile',
        join(dir, 'dockerd.pid'),
        '--host',
        `unix://${socket}`,
        '--bridge',
        'none',
        '--iptables=false',
        '--ip6tables=false',
        '--ip-masq=false',
        '--storage-driver',
        opts.storageDriver ?? 'vfs',
        '--containerd-namespace',
        `rm-e2e-${id}`,
        '--containerd-plugins-namespace',
        `rm-e2e-${id}-plugins`,
      ],
      { env, cwd: dir },
    )
    const clientEnv = { ...env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(dir, 'client') }
    const docker = (args: string[], o: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}) =>
      runProgram('docker', args, { env: { ...clientEnv, ...o.env }, timeoutMs: o.timeoutMs ?? 120_000 })
    await waitUntilReady(
      program,
      async () => {
        await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 })
        return true
      },
      60_000,
    )
    let stopped: Promise<void> | undefined
    const stop = (): Promise<void> => (stopped ??= cleanup())
    opts.t?.teardown(stop)
    const running = program
    return { docker, output: () => running.output(), stop }
  } catch (err) {
    await cleanup()
    throw err
  }
}
