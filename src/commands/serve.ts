import cluster from 'node:cluster'
import { createApp } from '../app.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import { createLogger } from '../log.js'
import { runPrimary } from '../workers/primary.js'
import { runWorker } from '../workers/worker.js'
import type { Command } from './shared.js'

export const serveCommand: Command = {
  usage: `regmirror serve [options]
  Runs the mirror (the default command).`,

  async run(argv) {
    const { flags } = parseFlags(argv)
    const config = await loadConfig({ flags, env: process.env })
    // Several workers (server.workers): a primary that forks them, each of which runs this command again.
    if (cluster.isWorker) return runWorker(config)
    if ((config.server.workers ?? 1) > 1) return runPrimary(config, createLogger(config.log.level))
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
