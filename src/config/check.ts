/** `regmirror config check`: validate the configuration and print the effective result with secrets redacted. */
import { stringify } from 'yaml'
import { FLAGS_HELP, parseFlags } from './args.js'
import { entries, getPath, setPath } from './declare.js'
import { ConfigError } from './errors.js'
import { loadConfig, redactConfig } from './load.js'
import { SETTINGS, type Config } from './settings.js'

/**
 * The effective config in the configuration-file format (each value as its type writes it: durations as `5m`,
 * sizes as `50GiB`; every upstream listed, wellKnownUpstreams: false), so that the output, secrets aside,
 * loads back to the same Config.
 */
export function toFileShape(c: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [path, d] of entries(SETTINGS)) {
    if (d.resolvedInto !== undefined) {
      if (d.shownAs !== undefined) setPath(out, path, d.shownAs)
      continue
    }
    const v = getPath(c, path)
    if (v !== undefined) setPath(out, path, d.type.format(v))
  }
  return out
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
