#!/usr/bin/env node
import { createApp } from './app.js'
import { FLAGS_HELP, parseFlags } from './config/args.js'
import { configCheck } from './config/check.js'
import { ConfigError } from './config/errors.js'
import { loadConfig } from './config/load.js'

const USAGE = `Usage: regmirror <command> [options]

Commands:
  serve            run the mirror (default)
  config check     validate the configuration and print it, secrets redacted

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
      if (stopping) {
        // A second signal means "now".
        process.exit(1)
      }
      stopping = true
      app.services.log.info({ signal, deadlineMs: config.timeouts.shutdown }, 'shutting down: no new connections, finishing responses in flight')
      const deadline = setTimeout(() => {
        app.services.log.warn('shutdown deadline passed; closing remaining connections')
        app.server.closeAllConnections()
      }, config.timeouts.shutdown)
      deadline.unref()
      app.server.close()
      app.server.closeIdleConnections()
      app.server.once('close', () => {
        void app.close().finally(resolve)
      })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  return 0
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
