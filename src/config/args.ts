/** Command-line flags shared by the subcommands (`serve`, `config check`, ...), derived from the settings' declarations. */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { entries, isList, type Declaration } from './declare.js'
import { ConfigError } from './errors.js'
import { CONFIG_FILE, SETTINGS } from './settings.js'
import * as v from './values.js'
import type { ValueType } from './values.js'

type Camel<S extends string> = S extends `${infer A}-${infer B}` ? `${A}${Capitalize<Camel<B>>}` : S
type Given<D> = D extends { overlay: ValueType<infer T> } ? T : D extends { type: ValueType<infer T> } ? T : never
type FlagsOf<Tb> = {
  -readonly [P in keyof Tb as Tb[P] extends { flag: infer F extends string } ? Camel<F> : never]?: NonNullable<
    Given<Tb[P]>
  > extends readonly unknown[]
    ? string[]
    : string
}

/** The flags as given (strings, not yet validated), keyed by the camel-cased flag name: `--max-size` is `maxSize`. */
export type CliFlags = FlagsOf<typeof SETTINGS & { config: typeof CONFIG_FILE }> & { help?: boolean }

/** `--max-size` → `maxSize`, its key in CliFlags. */
export function flagKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

const FLAGGED: Declaration[] = [CONFIG_FILE, ...entries(SETTINGS).map(([, d]) => d)].filter((d) => d.flag !== undefined)

const OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  ...Object.fromEntries(
    FLAGGED.map((d) => [d.flag!, isSwitch(d) ? { type: 'boolean' } : isList(d) ? { type: 'string', multiple: true } : { type: 'string' }]),
  ),
  help: { type: 'boolean', short: 'h' },
}

/** A boolean setting's flag takes no value: `--offline`. */
function isSwitch(d: Declaration): boolean {
  return d.type === v.boolean
}

function helpLine(left: string, text: string): string {
  return `  ${left.padEnd(25)} ${text}`
}

export const FLAGS_HELP = [
  'Options:',
  ...FLAGGED.map((d) => {
    const env = d.env === undefined ? '' : ` (env ${d.env}${isList(d) ? ', comma-separated' : ''})`
    return helpLine(isSwitch(d) ? `--${d.flag}` : `--${d.flag} ${d.arg}`, `${d.help ?? d.doc}${isList(d) ? '; repeatable' : ''}${env}`)
  }),
  helpLine('-h, --help', 'show this help'),
  'Precedence: flags > environment > configuration file > defaults.',
].join('\n')

/** A subcommand's own options (`preload --platform`), beside the settings' flags. */
export type CommandOptions = NonNullable<ParseArgsConfig['options']>

/**
 * Parses argv (without node and script): the settings' flags, and `command`'s own options, whose
 * values come back in `options`. Throws ConfigError on an unknown flag or a missing value.
 */
export function parseFlags(
  argv: string[],
  command: CommandOptions = {},
): { flags: CliFlags; positionals: string[]; options: Record<string, string | boolean | string[] | boolean[] | undefined> } {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true; strict: true }>>
  try {
    parsed = parseArgs({ args: argv, options: { ...OPTIONS, ...command }, allowPositionals: true, strict: true })
  } catch (e) {
    const err = e as Error & { code?: string }
    let msg = err.message
    const m = /Unknown option '([^']+)'/.exec(msg)
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && m) msg = `${m[1]}: unknown flag (see --help)`
    else if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') msg = msg.replace(/\.$/, '')
    throw new ConfigError([msg], { cause: e })
  }
  const flags: Record<string, unknown> = {}
  for (const d of FLAGGED) {
    // A command may give a flag a meaning of its own (`preload --pin` is a switch).
    if (d.flag! in command) continue
    const given = parsed.values[d.flag!]
    // A switch (`--offline`) is given as the text its setting parses, like the environment's.
    if (given !== undefined) flags[flagKey(d.flag!)] = typeof given === 'boolean' ? String(given) : given
  }
  if (parsed.values.help !== undefined) flags.help = parsed.values.help
  const options = Object.fromEntries(Object.keys(command).map((k) => [k, (parsed.values as Record<string, never>)[k]]))
  return { flags: flags as CliFlags, positionals: parsed.positionals, options }
}
