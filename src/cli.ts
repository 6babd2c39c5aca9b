#!/usr/bin/env node
import { clientConfigCommand } from './commands/client-config.js'
import { exportCommand } from './commands/export.js'
import { importCommand } from './commands/import.js'
import { pinsCommand } from './commands/pins.js'
import { preloadCommand } from './commands/preload.js'
import { serveCommand } from './commands/serve.js'
import { UsageError, type Command } from './commands/shared.js'
import { verifyCommand } from './commands/verify.js'
import { FLAGS_HELP } from './config/args.js'
import { configCheck } from './config/check.js'
import { ConfigError } from './config/errors.js'

const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  preload: preloadCommand,
  export: exportCommand,
  import: importCommand,
  pins: pinsCommand,
  verify: verifyCommand,
  'client-config': clientConfigCommand,
}

const USAGE = `Usage: regmirror <command> [options]

Commands:
  serve            run the mirror (default)
  preload REF...   fetch images into the cache (air-gapped sites: the connected side), or warm a mirror
  export REF...    write cached images as an OCI layout archive (--out FILE.tar)
  import FILE      load OCI layout archives and directories and docker save archives into the cache
  pins             list the pinned images; pins remove REF... unpins what preload/import --pin pinned
  config check     validate the configuration and print it, secrets redacted
  client-config    print the Docker, containerd, podman and k3s configuration that pulls through this mirror
  verify [--repair]
                   re-hash every cached blob and manifest; report corrupt, orphaned and stray
                   files (with --repair, remove them); exit 1 while problems remain
  help COMMAND     a command's own options

${FLAGS_HELP}
`

async function main(argv: string[]): Promise<number> {
  const [cmd = 'serve', ...rest] = argv[0]?.startsWith('-') ? ['serve', ...argv] : argv
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const which = rest[0] !== undefined ? COMMANDS[rest[0]] : undefined
    process.stdout.write(which ? `${which.usage}\n\n${FLAGS_HELP}\n` : USAGE)
    return 0
  }
  if (cmd === 'config') {
    if (rest[0] !== 'check') {
      process.stderr.write(`unknown config subcommand: ${rest[0] ?? '(none)'}\n\n${USAGE}`)
      return 2
    }
    return configCheck(rest.slice(1), process.stdout, process.stderr)
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined
  if (!command) {
    process.stderr.write(`unknown command: ${cmd}\n\n${USAGE}`)
    return 2
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n\n${FLAGS_HELP}\n`)
    return 0
  }
  try {
    return await command.run(rest)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`regmirror ${cmd}: ${err.message}\n\n${command.usage}\n`)
    return 2
  }
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
