/** Thrown when the configuration (file, environment or flags) is invalid; `problems` holds one line per problem. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID' as const
  readonly problems: string[]

  constructor(problems: string[], options?: { cause?: unknown }) {
    const list = problems.length > 0 ? problems : ['invalid configuration']
    super(
      list.length === 1 ? `invalid configuration: ${list[0]}` : `invalid configuration (${list.length} problems):\n  ${list.join('\n  ')}`,
      options,
    )
    this.name = 'ConfigError'
    this.problems = list
  }
}
