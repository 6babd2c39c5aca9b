import { spawn } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { sleep } from './sleep.js'

export interface BlackHole {
  /** http://127.0.0.1:PORT: a TCP connect to it never completes. */
  url: string
  close(): Promise<void>
}

/**
 * An address where TCP connects hang, as with a firewall that drops packets: a listener in a child
 * process that is then stopped (SIGSTOP), so nothing accepts, and whose accept queue is filled
 * first; Linux drops further SYNs instead of refusing them. Loopback only, no special privileges.
 */
export async function startBlackHole(): Promise<BlackHole> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const s = require('node:net').createServer(); s.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => console.log(s.address().port))",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject)
    child.stdout.once('data', (c: Buffer) => resolve(Number(String(c).trim())))
  })
  child.kill('SIGSTOP')
  // Fill the accept queue (backlog + 1 on Linux); the later fillers themselves hang, which is fine.
  const fillers: Socket[] = []
  for (let i = 0; i < 4; i++) {
    const s = connect({ host: '127.0.0.1', port })
    s.on('error', () => {})
    fillers.push(s)
  }
  await sleep(100)
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of fillers) s.destroy()
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGKILL')
      await exited
    },
  }
}
