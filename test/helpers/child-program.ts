/**
 * A long-running program started by an e2e test: its own process group (so stop() also ends its children),
 * stdout+stderr kept in memory for error messages, stopped with SIGTERM then SIGKILL. If the test process exits
 * without stopping it (a crash, a timeout), an 'exit' hook SIGKILLs every group still alive.
 */
import { spawn } from 'node:child_process'
import { sleep } from './sleep.js'

export interface ChildProgram {
  readonly name: string
  readonly pid: number
  /** Combined stdout and stderr so far (the last ~2 MB). */
  output(): string
  /** Whether the process has exited. */
  exited(): boolean
  /** Resolves when the process exits, with its exit code or signal. */
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** SIGTERM the process group, SIGKILL it after `graceMs`; resolves once the process has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>
}

export interface StartProgramOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Called with each complete line of stdout or stderr. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void
}

const OUTPUT_LIMIT = 2 * 1024 * 1024
const live = new Set<number>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const pid of live) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  })
}

export function startProgram(name: string, command: string, args: string[], options: StartProgramOptions = {}): ChildProgram {
  installExitHook()
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let done = false
  const partial = { stdout: '', stderr: '' }
  const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    const text = chunk.toString('utf8')
    out += text
    if (out.length > OUTPUT_LIMIT) out = out.slice(out.length - OUTPUT_LIMIT)
    if (options.onLine) {
      const lines = (partial[stream] + text).split('\n')
      partial[stream] = lines.pop() ?? ''
      for (const line of lines) options.onLine(line, stream)
    }
  }
  child.stdout.on('data', collect('stdout'))
  child.stderr.on('data', collect('stderr'))

  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (err) => {
      out += `\n[spawn error] ${String(err)}\n`
      done = true
      resolve({ code: null, signal: null })
    })
    child.once('close', (code, signal) => {
      done = true
      if (child.pid !== undefined) live.delete(child.pid)
      if (options.onLine) {
        for (const stream of ['stdout', 'stderr'] as const) {
          if (partial[stream] !== '') options.onLine(partial[stream], stream)
          partial[stream] = ''
        }
      }
      resolve({ code, signal })
    })
  })
  if (child.pid !== undefined) live.add(child.pid)

  let stopping: Promise<void> | undefined
  const signalGroup = (signal: NodeJS.Signals): void => {
    if (child.pid === undefined) return
    try {
      process.kill(-child.pid, signal)
    } catch {
      // the group is gone
    }
  }
  return {
    name,
    pid: child.pid ?? -1,
    output: () => out,
    exited: () => done,
    exit,
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        if (!done) {
          signalGroup('SIGTERM')
          const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs)
          await exit
          clearTimeout(timer)
        }
        // children that ignored SIGTERM or outlived the leader
        signalGroup('SIGKILL')
      })()
      return stopping
    },
  }
}

/**
 * Poll `ready` until it resolves true. Rejects with the program's output if the program exits first or
 * `timeoutMs` passes.
 */
export async function waitUntilReady(program: ChildProgram, ready: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (program.exited()) {
      throw new Error(`${program.name} exited before it was ready:\n${program.output()}`)
    }
    let ok = false
    try {
      ok = await ready()
    } catch {
      ok = false
    }
    if (ok) return
    if (Date.now() > deadline) {
      throw new Error(`${program.name} was not ready after ${timeoutMs} ms:\n${program.output()}`)
    }
    await sleep(50)
  }
}

/** Run a program to completion; resolve with its output, reject with an Error carrying stderr on a non-zero exit. */
export async function runProgram(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; input?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    if (child.pid !== undefined) live.add(child.pid)
    installExitHook()
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout?.on('data', (c: Buffer) => stdout.push(c))
    child.stderr?.on('data', (c: Buffer) => stderr.push(c))
    if (options.input !== undefined) child.stdin?.end(options.input)
    const timeoutMs = options.timeoutMs ?? 120_000
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`${command}: ${err.message}`, { cause: err }))
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      if (child.pid !== undefined) live.delete(child.pid)
      const out = Buffer.concat(stdout).toString('utf8')
      const err = Buffer.concat(stderr).toString('utf8')
      if (code === 0) {
        resolve({ stdout: out, stderr: err })
        return
      }
      const why = timedOut ? `timed out after ${timeoutMs} ms` : signal ? `killed by ${signal}` : `exit code ${code}`
      const error = new Error(`${command} ${args.join(' ')}: ${why}\n${err.trim()}`) as Error & {
        stdout: string
        stderr: string
        exitCode: number | null
      }
      error.stdout = out
      error.stderr = err
      error.exitCode = code
      reject(error)
    })
  })
}
