/** `regmirror config check`: validate the configuration and print the effective result with secrets redacted. */
import { stringify } from 'yaml'
import { FLAGS_HELP, parseFlags } from './args.js'
import { formatDuration, formatSize } from './durations.js'
import { ConfigError } from './errors.js'
import { loadConfig, redactConfig } from './load.js'
import type { Config } from './schema.js'

/**
 * The effective config in the configuration-file format (durations as `5m`, sizes as `50GiB`, every upstream
 * listed, wellKnownUpstreams: false), so that the output, secrets aside, loads back to the same Config.
 */
export function toFileShape(c: Config): Record<string, unknown> {
  const d = formatDuration
  const listenHost = c.listen.host.includes(':') ? `[${c.listen.host}]` : c.listen.host
  return {
    listen: `${listenHost}:${c.listen.port}`,
    dataDir: c.dataDir,
    log: { level: c.log.level },
    defaultUpstream: c.defaultUpstream,
    wellKnownUpstreams: false,
    upstreams: c.upstreams.map((u) => ({
      name: u.name,
      url: u.url,
      ...(u.hosts.length ? { hosts: u.hosts } : {}),
      libraryPrefix: u.libraryPrefix,
      ...(u.credentials ? { credentials: u.credentials } : {}),
      tagTtl: d(u.tagTtl),
      ...(u.tagTtlRules.length ? { tagTtlRules: u.tagTtlRules.map((r) => ({ pattern: r.pattern, ttl: d(r.ttl) })) } : {}),
      ...(u.allow.length ? { allow: u.allow } : {}),
      ...(u.deny.length ? { deny: u.deny } : {}),
      ...(u.realms.length ? { realms: u.realms } : {}),
      ...(u.allowedNetworks.length ? { allowedNetworks: u.allowedNetworks } : {}),
    })),
    cache: { maxSize: formatSize(c.cache.maxSize), pins: c.cache.pins, touchInterval: d(c.cache.touchInterval) },
    metadata: c.metadata,
    timeouts: {
      connect: d(c.timeouts.connect),
      headers: d(c.timeouts.headers),
      bodyIdle: d(c.timeouts.bodyIdle),
      shutdown: d(c.timeouts.shutdown),
    },
    retries: { attempts: c.retries.attempts, resumeAttempts: c.retries.resumeAttempts, backoff: d(c.retries.backoff) },
    offline: { failureThreshold: c.offline.failureThreshold, coolDown: d(c.offline.coolDown) },
    server: {
      headersTimeout: d(c.server.headersTimeout),
      requestTimeout: d(c.server.requestTimeout),
      keepAliveTimeout: d(c.server.keepAliveTimeout),
      idleTimeout: d(c.server.idleTimeout),
      maxHeaderSize: c.server.maxHeaderSize,
    },
  }
}

/**
 * `regmirror config check [--config FILE] [other flags]`: prints the effective config as YAML (secrets redacted)
 * to `out` and returns 0; on problems prints one line per problem to `err` and returns 1.
 * `env` defaults to process.env and `cwd` to process.cwd().
 */
export async function configCheck(
  argv: string[],
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
  opts: { env?: Record<string, string | undefined>; cwd?: string } = {},
): Promise<number> {
  try {
    const { flags, positionals } = parseFlags(argv)
    if (flags.help) {
      out.write(
        `Usage: regmirror config check [options]\n\nValidates the configuration and prints the effective result.\n\n${FLAGS_HELP}\n`,
      )
      return 0
    }
    if (positionals.length > 0) throw new ConfigError([`unexpected argument: ${positionals[0]}`])
    const config = await loadConfig({ flags, env: opts.env ?? process.env, cwd: opts.cwd ?? process.cwd() })
    const shown = toFileShape(redactConfig(config) as Config)
    out.write(`# effective configuration (secrets redacted)\n${stringify(shown, { lineWidth: 0 })}`)
    return 0
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) err.write(`${p}\n`)
      err.write(`configuration invalid: ${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}\n`)
      return 1
    }
    throw e
  }
}
