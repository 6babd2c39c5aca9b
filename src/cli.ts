#!/usr/bin/env node
import { createApp } from './app.js'
import { verifyDataDir } from './cache/verify.js'
import { FLAGS_HELP, parseFlags } from './config/args.js'
import { configCheck } from './config/check.js'
import { ConfigError } from './config/errors.js'
import { loadConfig } from './config/load.js'

const USAGE = `Usage: regmirror <command> [options]

Commands:
  serve            run the mirror (default)
  config check     validate the configuration and print it, secrets redacted
  verify [--repair]
                   re-hash every cached blob and manifest; report corrupt, orphaned and stray
                   files (with --repair, remove them); exit 1 while problems remain

${FLAGS_HELP}`

async function main(argv: string[]): Promise<number> {
  const [cmd = 'serve', ...rest] = argv[0]?.startsWith('-') ? ['serve', ...argv] : argv
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE)
    return 0
  }
  if (cmd === 'config') {
    if (rest[0] !== 'check') {
      process.stderr.write(`unknown config subcommand: ${rest[0] ?? '(none)'}\n\n${USAGE}`)
      return 2
    }
    return configCheck(rest.slice(1), process.stdout, process.stderr)
  }
  if (cmd === 'verify') return verify(rest)
  if (cmd !== 'serve') {
    process.stderr.write(`unknown command: ${cmd}\n\n${USAGE}`)
    return 2
  }
  const { flags } = parseFlags(rest)
  if (flags.help) {
    process.stdout.write(USAGE)
    return 0
  }
  const config = await loadConfig({ flags, env: process.env })
  const app = await createApp(config)
  await app.listen()
  await new Promise<void>((resolve) => {
    let stopping = false
    const stop = (signal: string) => {
      // A second signal means "now".
      if (stopping) process.exit(1)
      stopping = true
      const deadlineMs = config.timeouts.shutdown
      app.services.log.info({ signal, deadlineMs }, 'shutting down: no new connections, finishing responses in flight')
      void app.shutdown(deadlineMs).finally(resolve)
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  return 0
}

async function verify(argv: string[]): Promise<number> {
  const repair = argv.includes('--repair')
  const { flags } = parseFlags(argv.filter((a) => a !== '--repair'))
  if (flags.help) {
    process.stdout.write(USAGE)
    return 0
  }
  const config = await loadConfig({ flags, env: process.env })
  const tty = process.stderr.isTTY === true
  let last = 0
  const result = await verifyDataDir(config.dataDir, {
    repair,
    onProgress: (p) => {
      if (!tty) return
      const now = Date.now()
      if (now - last < 100 && p.done !== p.total) return
      last = now
      const pct = p.bytesTotal === 0 ? 100 : Math.floor((p.bytesDone / p.bytesTotal) * 100)
      process.stderr.write(
        `\r\x1b[Kverifying ${p.done}/${p.total} files, ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} (${pct}%)`,
      )
    },
    onProblem: (p) => {
      if (tty) process.stderr.write('\r\x1b[K')
      const action = p.repaired === true ? ' (removed)' : p.repaired === false ? ' (could not remove)' : ''
      process.stdout.write(`${p.kind} ${p.path}${p.detail ? ` ${p.detail}` : ''}${action}\n`)
    },
  })
  if (tty) process.stderr.write('\r\x1b[K')
  const counts = new Map<string, number>()
  for (const p of result.problems) counts.set(p.kind, (counts.get(p.kind) ?? 0) + 1)
  const found = result.problems.length === 0 ? 'no problems' : [...counts].map(([k, n]) => `${n} ${k}`).join(', ')
  const repaired = repair ? `; ${result.problems.length - result.remaining} removed, ${result.remaining} remaining` : ''
  process.stdout.write(`verify: ${result.blobs} files (${formatBytes(result.bytes)}) checked in ${config.dataDir}: ${found}${repaired}\n`)
  return result.remaining === 0 ? 0 : 1
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

/**
 * Exits once stdout and stderr are flushed: on a pipe their writes can be asynchronous, and
 * process.exit() alone may cut off the problems `config check` or a failed start just printed.
 */
function exit(code: number): void {
  process.exitCode = code
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}

main(process.argv.slice(2)).then(exit, (err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`regmirror: invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`)
    exit(2)
    return
  }
  process.stderr.write(`regmirror: ${err instanceof Error ? err.message : String(err)}\n`)
  exit(1)
})
