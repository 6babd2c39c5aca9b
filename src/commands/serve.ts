import { createApp } from '../app.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import type { Command } from './shared.js'

export const serveCommand: Command = {
  usage: `regmirror serve [options]
  Runs the mirror (the default command).`,

  async run(argv) {
    const { flags } = parseFlags(argv)
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
  },
}
