/**
 * Real forward proxies from Debian packages as test children, each with its own config file, log and free port on
 * 127.0.0.1: squid (HTTP CONNECT and plain forwarding, optional basic auth against an htpasswd file, a hosts file
 * of its own), tinyproxy (both kinds too, optional BasicAuth) and dante's danted (SOCKS5). `outgoing` makes the
 * proxy dial from that address (127.0.0.2), so an upstream that lets in only that address (counting-proxy.ts
 * `onlyFrom`) is reachable through the proxy and nothing else. `log()` is the proxy's own log of connections.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { runProgram, startProgram, type ChildProgram } from './child-program.js'
import { startOnFreePort } from './free-port.js'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import type { TestContext } from './test-context.js'

export interface TestProxy {
  /** `http://127.0.0.1:PORT` or `socks5://127.0.0.1:PORT`, without credentials. */
  url: string
  port: number
  /** The proxy's log of connections and requests so far. */
  log(): Promise<string>
  stop(): Promise<void>
}

export interface ProxyOptions {
  /** Proxy authentication required: user → password (squid, tinyproxy). */
  users?: Record<string, string>
  /** The source address of the proxy's own connections. */
  outgoing?: string
  /** squid: name → address, resolved by squid alone (the mirror cannot resolve these names). */
  hosts?: Record<string, string>
  /** squid: CONNECT to these ports is refused (403). */
  denyConnectPorts?: number[]
  t?: TestContext
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })
}

async function start(
  name: string,
  dir: string,
  logFile: string,
  run: (port: number) => Promise<ChildProgram>,
  scheme: string,
  t: TestContext | undefined,
): Promise<TestProxy> {
  let program: ChildProgram | undefined
  const cleanup = async () => {
    await program?.stop()
    await removeTempDir(dir)
  }
  try {
    const started = await startOnFreePort(async (port) => (program = await run(port)), portOpen)
    let stopped: Promise<void> | undefined
    const stop = () => (stopped ??= cleanup())
    t?.teardown(stop)
    const running = started.program
    return {
      url: `${scheme}://127.0.0.1:${started.port}`,
      port: started.port,
      log: async () => `${await readFile(logFile, 'utf8').catch(() => '')}${running.output()}`,
      stop,
    }
  } catch (err) {
    await cleanup()
    throw new Error(`${name} did not start`, { cause: err })
  }
}

/** squid in the foreground (-N), no disk cache, nothing cached in memory either: every request goes through. */
export async function startSquid(opts: ProxyOptions = {}): Promise<TestProxy> {
  const dir = await makeTempDir('squid')
  // squid drops to the `proxy` user: it must be able to write its logs and read its files.
  await chmod(dir, 0o777)
  const access = join(dir, 'access.log')
  const lines: string[] = []
  if (opts.users) {
    const htpasswd = join(dir, 'htpasswd')
    await writeFile(htpasswd, '')
    for (const [user, password] of Object.entries(opts.users)) await runProgram('htpasswd', ['-b', htpasswd, user, password])
    await chmod(htpasswd, 0o644)
    lines.push(
      `auth_param basic program /usr/lib/squid/basic_ncsa_auth ${htpasswd}`,
      'auth_param basic realm regmirror-test-proxy',
      'acl authed proxy_auth REQUIRED',
    )
  }
  if (opts.hosts) {
    const hosts = join(dir, 'hosts')
    await writeFile(
      hosts,
      Object.entries(opts.hosts)
        .map(([n, a]) => `${a} ${n}\n`)
        .join(''),
    )
    await chmod(hosts, 0o644)
    lines.push(`hosts_file ${hosts}`)
  }
  if (opts.denyConnectPorts?.length) {
    lines.push(`acl denied_ports port ${opts.denyConnectPorts.join(' ')}`, 'http_access deny CONNECT denied_ports')
  }
  lines.push(opts.users ? 'http_access allow authed' : 'http_access allow all', 'http_access deny all')
  if (opts.outgoing) lines.push(`tcp_outgoing_address ${opts.outgoing}`)
  return start(
    'squid',
    dir,
    access,
    async (port) => {
      const conf = join(dir, `squid-${port}.conf`)
      await writeFile(
        conf,
        [
          `http_port 127.0.0.1:${port}`,
          `pid_filename ${dir}/squid-${port}.pid`,
          `access_log stdio:${access}`,
          `cache_log ${dir}/cache.log`,
          'cache deny all',
          'cache_mem 8 MB',
          'shutdown_lifetime 0 seconds',
          'netdb_filename none',
          `coredump_dir ${dir}`,
          ...lines,
          '',
        ].join('\n'),
      )
      await chmod(conf, 0o644)
      return startProgram('squid', 'squid', ['-N', '-f', conf])
    },
    'http',
    opts.t,
  )
}

/** tinyproxy in the foreground (-d), logging every connection. */
export async function startTinyproxy(opts: ProxyOptions = {}): Promise<TestProxy> {
  const dir = await makeTempDir('tinyproxy')
  await chmod(dir, 0o777)
  const logFile = join(dir, 'tinyproxy.log')
  return start(
    'tinyproxy',
    dir,
    logFile,
    async (port) => {
      const conf = join(dir, `tinyproxy-${port}.conf`)
      await writeFile(
        conf,
        [
          `Port ${port}`,
          'Listen 127.0.0.1',
          ...(opts.outgoing ? [`Bind ${opts.outgoing}`] : []),
          'User nobody',
          'Group nogroup',
          'Timeout 600',
          `LogFile "${logFile}"`,
          'LogLevel Connect',
          'MaxClients 100',
          'Allow 127.0.0.1',
          ...Object.entries(opts.users ?? {}).map(([u, p]) => `BasicAuth ${u} ${p}`),
          '',
        ].join('\n'),
      )
      return startProgram('tinyproxy', 'tinyproxy', ['-d', '-c', conf])
    },
    'http',
    opts.t,
  )
}

/** dante's danted, SOCKS5 without authentication, logging connects. */
export async function startDante(opts: ProxyOptions = {}): Promise<TestProxy> {
  const dir = await makeTempDir('danted')
  await chmod(dir, 0o777)
  const logFile = join(dir, 'danted.log')
  return start(
    'danted',
    dir,
    logFile,
    async (port) => {
      const conf = join(dir, `danted-${port}.conf`)
      await writeFile(
        conf,
        [
          `logoutput: ${logFile}`,
          `internal: 127.0.0.1 port = ${port}`,
          `external: ${opts.outgoing ?? '127.0.0.1'}`,
          'socksmethod: none',
          'clientmethod: none',
          'user.privileged: root',
          'user.unprivileged: nobody',
          // dante's grammar wants each rule's keywords on lines of their own.
          'client pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: connect disconnect error\n}',
          'socks pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  command: connect\n  log: connect disconnect error\n}',
          '',
        ].join('\n'),
      )
      return startProgram('danted', 'danted', ['-f', conf, '-p', join(dir, `danted-${port}.pid`), '-N', '1'])
    },
    'socks5',
    opts.t,
  )
}
