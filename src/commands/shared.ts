import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { CliFlags } from '../config/args.js'
import type { Layout } from '../cache/layout.js'
import { createLogger, type Logger } from '../log.js'

/** A subcommand: its usage text and what it does with argv (after its name); resolves the exit code. */
export interface Command {
  usage: string
  run(argv: string[]): Promise<number>
}

/**
 * The tools' log: JSON lines on stderr (stdout may carry an archive, and progress is on stderr
 * too), warnings and up unless a level was asked for.
 */
export function toolLogger(flags: CliFlags): Logger {
  return createLogger(flags.logLevel ?? process.env.REGMIRROR_LOG_LEVEL ?? 'warn', process.stderr)
}

/** Tells a mirror running on this data directory that the tools added to it (it re-reads pins and tags). */
export async function markChanged(layout: Layout): Promise<void> {
  await mkdir(dirname(layout.changedFile), { recursive: true })
  await writeFile(layout.changedFile, `${new Date().toISOString()} ${process.pid}\n`)
}

/** The option values of parseFlags, typed as the commands declare them. */
export function stringOpt(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

export function listOpt(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
}

/** `--concurrency N`: a whole number from 1 to 64. */
export function countOpt(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--${name} ${String(v)}: expected a whole number from 1 to 64`)
  return n
}

/** A mistake in how a command was called: printed with its usage, exit code 2. */
export class UsageError extends Error {}
