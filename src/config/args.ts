/** Command-line flags shared by the subcommands (`serve`, `config check`, ...). */
import { parseArgs } from 'node:util'
import { ConfigError } from './errors.js'

export interface CliFlags {
  config?: string
  listen?: string
  data?: string
  upstream?: string[]
  defaultUpstream?: string
  maxSize?: string
  tagTtl?: string
  redis?: string
  logLevel?: string
  pin?: string[]
  help?: boolean
}

const OPTIONS = {
  config: { type: 'string' },
  listen: { type: 'string' },
  data: { type: 'string' },
  upstream: { type: 'string', multiple: true },
  'default-upstream': { type: 'string' },
  'max-size': { type: 'string' },
  'tag-ttl': { type: 'string' },
  redis: { type: 'string' },
  'log-level': { type: 'string' },
  pin: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const

export const FLAGS_HELP = `Options:
  --config FILE             YAML configuration file (env REGMIRROR_CONFIG)
  --listen HOST:PORT        address to listen on, e.g. 0.0.0.0:5000, [::]:5000, :5000 (env REGMIRROR_LISTEN)
  --data DIR                data directory for the cache (env REGMIRROR_DATA)
  --upstream NAME=URL       add an upstream or override its URL; repeatable (env REGMIRROR_UPSTREAMS=N=U,N=U)
  --default-upstream NAME   upstream used when a request names none (env REGMIRROR_DEFAULT_UPSTREAM)
  --max-size SIZE           cache size bound, e.g. 50GiB, or auto (env REGMIRROR_MAX_SIZE)
  --tag-ttl DURATION        default tag freshness, e.g. 5m (env REGMIRROR_TAG_TTL)
  --redis URL               redis:// URL of a shared metadata store (env REGMIRROR_REDIS)
  --log-level LEVEL         fatal, error, warn, info, debug, trace or silent (env REGMIRROR_LOG_LEVEL)
  --pin REF                 keep this image in the cache (UPSTREAM/REPO:TAG or @sha256:...); repeatable
  -h, --help                show this help
Precedence: flags > environment > configuration file > defaults.`

/** Parses argv (without node and script). Throws ConfigError on an unknown flag or a missing value. */
export function parseFlags(argv: string[]): { flags: CliFlags; positionals: string[] } {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true; strict: true }>>
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (e) {
    const err = e as Error & { code?: string }
    let msg = err.message
    const m = /Unknown option '([^']+)'/.exec(msg)
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && m) msg = `${m[1]}: unknown flag (see --help)`
    else if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') msg = msg.replace(/\.$/, '')
    throw new ConfigError([msg], { cause: e })
  }
  const v = parsed.values
  const flags: CliFlags = {}
  if (v.config !== undefined) flags.config = v.config
  if (v.listen !== undefined) flags.listen = v.listen
  if (v.data !== undefined) flags.data = v.data
  if (v.upstream !== undefined) flags.upstream = v.upstream
  if (v['default-upstream'] !== undefined) flags.defaultUpstream = v['default-upstream']
  if (v['max-size'] !== undefined) flags.maxSize = v['max-size']
  if (v['tag-ttl'] !== undefined) flags.tagTtl = v['tag-ttl']
  if (v.redis !== undefined) flags.redis = v.redis
  if (v['log-level'] !== undefined) flags.logLevel = v['log-level']
  if (v.pin !== undefined) flags.pin = v.pin
  if (v.help !== undefined) flags.help = v.help
  return { flags, positionals: parsed.positionals }
}
