/**
 * CNCF distribution 2.8 (Debian's `docker-registry`) as a test upstream, or as a pull-through cache for the benchmark.
 *
 * distribution listens on 127.0.0.1:<free port> with filesystem storage in a temp dir; a counting proxy
 * (counting-proxy.ts) sits in front of it and `url`/`hostPort` are the proxy's, so `requests()` lists exactly what
 * reached the registry. `directUrl` bypasses the proxy (benchmarks that must not pay for it).
 * `auth: 'token'` configures `auth.token` like Docker Hub (realm/service/issuer/rootcertbundle) against a token
 * server: the one passed in `tokenServer`, or one this helper starts (and stops) itself.
 * `proxy` turns on distribution's pull-through cache mode (`proxy.remoteurl`, optional username/password).
 */
import { writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import bcrypt from 'bcryptjs'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import { startOnFreePort } from './free-port.js'
import { startProgram, type ChildProgram } from './child-program.js'
import { startCountingProxy, type CountingProxy, type CountingProxyOptions, type RequestRecord } from './counting-proxy.js'
import { startTokenServer, type TokenServer, type TokenServerOptions } from './token-server.js'
import type { TestContext } from './test-context.js'

export interface DistributionOptions {
  /** 'htpasswd': HTTP Basic against `users` (distribution's htpasswd auth, bcrypt). */
  auth?: 'none' | 'token' | 'htpasswd'
  /** With auth 'htpasswd': user → password. */
  users?: Record<string, string>
  /** With auth 'token': an existing token server, or options for one this helper starts. */
  tokenServer?: TokenServer | TokenServerOptions
  proxy?: { remoteurl: string; username?: string; password?: string }
  /** Pace the counting proxy's response bodies to this rate (an emulated slow upstream link). */
  linkBytesPerSecond?: number
  /** Where the counting proxy in front listens, whether it speaks TLS, whom it lets in (counting-proxy.ts). */
  front?: Pick<CountingProxyOptions, 'host' | 'tls' | 'onlyFrom'>
  /** Each line distribution prints (its access log is on stdout): the bench counts upstream bytes from it. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void
  /** Keep blobs in an S3 bucket (distribution's s3 driver, path-style, signature v4) instead of the temp dir. */
  s3?: { endpoint: string; region: string; bucket: string; accessKeyId: string; secretAccessKey: string }
  /** Registers stop() with t.teardown. */
  t?: TestContext
}

export interface Distribution {
  /** `http://127.0.0.1:PORT` of the counting proxy in front of distribution (as `front` says). */
  url: string
  /** `127.0.0.1:PORT` of the counting proxy: the registry part of image references. */
  hostPort: string
  /** Connections the counting proxy closed because they did not come from `front.onlyFrom`. */
  refused(): string[]
  /** distribution itself, without the counting proxy. */
  directUrl: string
  /** The distribution process (for the benchmark's memory readings). */
  pid: number
  storageDir: string
  configPath: string
  /** The token server, with auth 'token'. */
  tokenServer?: TokenServer
  /** Every request that reached distribution through `url`, in order. */
  requests(): RequestRecord[]
  /** distribution's own stdout+stderr (text logs and access log). */
  output(): string
  stop(): Promise<void>
}

/** REGISTRY_* would override the config file, AWS_* reach the s3 driver (an AWS_CA_BUNDLE makes it panic). */
function withoutRegistryEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('REGISTRY_') && !key.startsWith('AWS_')))
}

function isTokenServer(x: TokenServer | TokenServerOptions): x is TokenServer {
  return typeof (x as TokenServer).realm === 'string'
}

export async function startDistribution(opts: DistributionOptions = {}): Promise<Distribution> {
  const dir = await makeTempDir('distribution')
  const storageDir = join(dir, 'storage')
  const configPath = join(dir, 'config.yml')
  let ownTokenServer: TokenServer | undefined
  let tokenServer: TokenServer | undefined
  let program: ChildProgram | undefined
  let proxy: CountingProxy | undefined

  const cleanup = async (): Promise<void> => {
    await proxy?.stop()
    await program?.stop()
    await ownTokenServer?.stop()
    await removeTempDir(dir)
  }

  try {
    await mkdir(storageDir)
    if (opts.auth === 'token') {
      if (opts.tokenServer !== undefined && isTokenServer(opts.tokenServer)) {
        tokenServer = opts.tokenServer
      } else {
        ownTokenServer = await startTokenServer(opts.tokenServer ?? {})
        tokenServer = ownTokenServer
      }
    }

    const started = await startOnFreePort(
      async (port) => {
        // JSON is YAML; distribution parses it with yaml.v2.
        const config: Record<string, unknown> = {
          version: '0.1',
          log: { level: 'info', formatter: 'text', accesslog: { disabled: false }, fields: { service: 'registry' } },
          storage: {
            ...(opts.s3 === undefined
              ? { filesystem: { rootdirectory: storageDir } }
              : {
                  s3: {
                    regionendpoint: opts.s3.endpoint,
                    region: opts.s3.region,
                    bucket: opts.s3.bucket,
                    accesskey: opts.s3.accessKeyId,
                    secretkey: opts.s3.secretAccessKey,
                    secure: opts.s3.endpoint.startsWith('https:'),
                    v4auth: true,
                    rootdirectory: '/distribution',
                  },
                }),
            delete: { enabled: true },
            maintenance: { uploadpurging: { enabled: false } },
          },
          http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex') },
          health: { storagedriver: { enabled: false } },
        }
        if (tokenServer !== undefined) {
          config.auth = {
            token: {
              realm: tokenServer.realm,
              service: tokenServer.service,
              issuer: tokenServer.issuer,
              rootcertbundle: tokenServer.certPath,
            },
          }
        }
        if (opts.auth === 'htpasswd') {
          const file = join(dir, 'htpasswd')
          await writeFile(
            file,
            Object.entries(opts.users ?? {})
              .map(([u, p]) => `${u}:${bcrypt.hashSync(p, 4)}\n`)
              .join(''),
          )
          config.auth = { htpasswd: { realm: 'e2e-private', path: file } }
        }
        if (opts.proxy !== undefined) {
          const p: Record<string, string> = { remoteurl: opts.proxy.remoteurl }
          if (opts.proxy.username !== undefined) p.username = opts.proxy.username
          if (opts.proxy.password !== undefined) p.password = opts.proxy.password
          config.proxy = p
        }
        await writeFile(configPath, JSON.stringify(config, null, 2))
        return startProgram('docker-registry', 'docker-registry', ['serve', configPath], {
          env: { ...withoutRegistryEnv(process.env), HOME: dir },
          cwd: dir,
          ...(opts.onLine !== undefined ? { onLine: opts.onLine } : {}),
        })
      },
      async (port) => {
        const res = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(2000) })
        await res.arrayBuffer()
        return res.status === 200 || res.status === 401
      },
    )
    program = started.program
    const port = started.port

    proxy = await startCountingProxy(port, { bytesPerSecond: opts.linkBytesPerSecond, ...opts.front })
    const counting = proxy
    let stopped: Promise<void> | undefined
    const stop = (): Promise<void> => (stopped ??= cleanup())
    const running = program
    opts.t?.teardown(stop)
    return {
      url: counting.url,
      hostPort: new URL(counting.url).host,
      refused: () => counting.refused(),
      directUrl: `http://127.0.0.1:${port}`,
      pid: running.pid,
      storageDir,
      configPath,
      ...(tokenServer !== undefined ? { tokenServer } : {}),
      requests: () => counting.requests(),
      output: () => running.output(),
      stop,
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}
