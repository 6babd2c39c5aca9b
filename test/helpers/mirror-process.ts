import { startProgram, type ChildProgram } from './child-program.js'

export interface MirrorProcess {
  program: ChildProgram
  url: string
  /** JSON log lines so far. */
  logs(): string[]
}

/** `regmirror serve` as a real child process (for kill -9 and signals), on a free port. */
export async function startMirrorProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<MirrorProcess> {
  const lines: string[] = []
  let resolveUrl!: (u: string) => void
  const listening = new Promise<string>((r) => (resolveUrl = r))
  const program = startProgram(
    'regmirror',
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', 'serve', '--listen', '127.0.0.1:0', ...args],
    {
      cwd: process.cwd(),
      env: { ...process.env, REGMIRROR_CONFIG: '', REGMIRROR_LOG_LEVEL: 'info', ...env },
      onLine: (line) => {
        lines.push(line)
        if (line.includes('"regmirror listening"')) {
          const port = (JSON.parse(line) as { port: number }).port
          resolveUrl(`http://127.0.0.1:${port}`)
        }
      },
    },
  )
  const url = await Promise.race([
    listening,
    program.exit.then(({ code, signal }) => {
      throw new Error(`regmirror exited (${code ?? signal}) before listening:\n${program.output()}`)
    }),
  ])
  return { program, url, logs: () => lines }
}
