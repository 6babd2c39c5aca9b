/**
 * A free TCP port on 127.0.0.1: listen on port 0, read the port, close. There is a small window in which another
 * process may take the port, so the helpers that start programs on it retry their start a few times.
 */
import { createServer } from 'node:net'
import { waitUntilReady, type ChildProgram } from './child-program.js'

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error('freePort: no TCP address'))
        return
      }
      const { port } = address
      server.close((err) => (err ? reject(err) : resolve(port)))
    })
  })
}

/**
 * Starts a program on a free port and waits until `ready` says it answers. If another process took the port in
 * the window freePort leaves, the program is started again on another port (three tries in all).
 */
export async function startOnFreePort(
  start: (port: number) => ChildProgram | Promise<ChildProgram>,
  ready: (port: number) => Promise<boolean>,
): Promise<{ program: ChildProgram; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const program = await start(port)
    try {
      await waitUntilReady(program, () => ready(port))
      return { program, port }
    } catch (err) {
      const out = program.output()
      await program.stop()
      if (attempt < 3 && /address already in use/i.test(out)) continue
      throw err
    }
  }
}
