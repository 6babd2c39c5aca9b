/**
 * A test-owned redis-server on 127.0.0.1:<free port>: no persistence (`--save ''`, `--appendonly no`), working dir
 * in a temp dir, no config file (the host's /etc/redis is not read).
 */
import { connect } from 'node:net'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import { startOnFreePort } from './free-port.js'
import { startProgram, type ChildProgram } from './child-program.js'
import type { TestContext } from './test-context.js'

export interface Redis {
  /** `redis://127.0.0.1:PORT` */
  url: string
  port: number
  output(): string
  stop(): Promise<void>
}

/** Send one inline command (e.g. `PING`) and resolve with the first reply line, e.g. `+PONG`. */
export async function redisCommand(port: number, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port })
    let data = ''
    const timer = setTimeout(() => socket.destroy(new Error(`redis ${command}: no reply after ${timeoutMs} ms`)), timeoutMs)
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('utf8')
      const end = data.indexOf('\r\n')
      if (end >= 0) {
        clearTimeout(timer)
        socket.end()
        resolve(data.slice(0, end))
      }
    })
    socket.write(`${command}\r\n`)
  })
}

export async function startRedis(opts: { t?: TestContext } = {}): Promise<Redis> {
  const dir = await makeTempDir('redis')
  let program: ChildProgram | undefined
  const cleanup = async (): Promise<void> => {
    await program?.stop()
    await removeTempDir(dir)
  }
  try {
    const started = await startOnFreePort(
      (p) =>
        startProgram(
          'redis-server',
          'redis-server',
          [
            '--port',
            String(p),
            '--bind',
            '127.0.0.1',
            '--save',
            '',
            '--appendonly',
            'no',
            '--dir',
            dir,
            '--daemonize',
            'no',
            '--protected-mode',
            'yes',
            '--loglevel',
            'notice',
          ],
          { cwd: dir },
        ),
      async (p) => (await redisCommand(p, 'PING', 1000)) === '+PONG',
    )
    program = started.program
    const port = started.port
    let stopped: Promise<void> | undefined
    const stop = (): Promise<void> => (stopped ??= cleanup())
    opts.t?.teardown(stop)
    const running = program
    return { url: `redis://127.0.0.1:${port}`, port, output: () => running.output(), stop }
  } catch (err) {
    await cleanup()
    throw err
  }
}
