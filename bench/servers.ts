/** Starting regmirror as a child process, finding distribution's pid, and reading peak RSS from /proc. */
import { execFileSync } from 'node:child_process'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { get } from 'node:http'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../test/helpers/free-port.js'
import { startProgram, waitUntilReady, type ChildProgram } from '../test/helpers/child-program.js'

export const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '../..')
/** The regmirror build to run; BENCH_REGMIRROR_CLI points at another build (e.g. to compare two commits). */
export const CLI = process.env.BENCH_REGMIRROR_CLI ?? resolve(REPO_ROOT, 'dist/cli.js')

export interface Regmirror {
  url: string
  pid: number
  program: ChildProgram
  /** ms from spawn to the 'regmirror listening' log line, and to the first 200 from /v2/. */
  startup: { listeningMs: number | undefined; readyMs: number }
  stop(): Promise<void>
}

export interface RegmirrorOptions {
  dataDir: string
  upstreamUrl: string
  maxSize?: string
  logLevel?: string
  /** How often to poll /v2/ while starting (ms). */
  pollMs?: number
  timeoutMs?: number
  /** More `serve` flags, e.g. `['--workers', '2']`. */
  extraArgs?: string[]
  /** Another build than CLI (bench/ab.ts), and node flags before it (e.g. --cpu-prof). */
  cli?: string
  nodeArgs?: string[]
}

/** `node dist/cli.js serve` on a free loopback port, default upstream `bench` = upstreamUrl. */
export async function startRegmirror(opts: RegmirrorOptions): Promise<Regmirror> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  let listeningAt: number | undefined
  const spawnedAt = performance.now()
  const program = startProgram(
    'regmirror',
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      opts.cli ?? CLI,
      'serve',
      '--listen',
      `127.0.0.1:${port}`,
      '--data',
      opts.dataDir,
      '--upstream',
      `bench=${opts.upstreamUrl}`,
      '--default-upstream',
      'bench',
      '--max-size',
      opts.maxSize ?? '50GiB',
      '--log-level',
      opts.logLevel ?? 'info',
      ...(opts.extraArgs ?? []),
    ],
    {
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGMIRROR_'))),
      onLine: (line) => {
        if (listeningAt === undefined && line.includes('"regmirror listening"')) listeningAt = performance.now()
      },
    },
  )
  const pollMs = opts.pollMs ?? 5
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000)
  let readyAt: number | undefined
  for (;;) {
    if (program.exited()) throw new Error(`regmirror exited before it was ready:\n${program.output()}`)
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) })
      await res.arrayBuffer()
      if (res.status === 200) {
        readyAt = performance.now()
        break
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await program.stop()
      throw new Error(`regmirror not ready:\n${program.output()}`)
    }
    await new Promise((r) => setTimeout(r, pollMs))
  }
  await everyWorkerReady(url, deadline)
  // The log line and the first answer race by a few ms; give the line a moment to arrive through the pipe.
  await waitUntilReady(program, async () => listeningAt !== undefined, 2000).catch(() => {})
  return {
    url,
    pid: program.pid,
    program,
    startup: { listeningMs: listeningAt === undefined ? undefined : listeningAt - spawnedAt, readyMs: readyAt - spawnedAt },
    stop: () => program.stop(),
  }
}

/**
 * With several worker processes, /v2/ answering on one says nothing of the others, which may still be rebuilding
 * their index (503 to every registry request). Waits for /readyz to answer 200 on enough new connections in a row
 * that each worker was asked (node:cluster hands connections round-robin). A build without /readyz (404) passes.
 */
async function everyWorkerReady(url: string, deadline: number): Promise<void> {
  const status = (): Promise<number> =>
    new Promise((ok) => {
      const req = get(`${url}/readyz`, { agent: false, timeout: 2000 }, (res) => {
        res.resume()
        ok(res.statusCode ?? 0)
      })
      req.on('timeout', () => req.destroy()).on('error', () => ok(0))
    })
  for (let inARow = 0; inARow < 2 * availableParallelism() + 4;) {
    const code = await status()
    inARow = code === 200 || code === 404 ? inARow + 1 : 0
    if (inARow === 0) {
      if (Date.now() > deadline) throw new Error(`regmirror at ${url}: /readyz still ${code}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

/** The pid of `docker-registry serve <configPath>` (the e2e helper does not expose it). */
export async function pidOfDistribution(configPath: string): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0')
      if (argv.some((a) => a.endsWith('docker-registry')) && argv.includes(configPath)) return Number(entry)
    } catch {
      // gone
    }
  }
  throw new Error(`no docker-registry process with ${configPath}`)
}

async function statusField(pid: number, field: string): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

/** Peak resident set size since start or the last resetPeakRss (VmHWM), bytes. */
export function peakRss(pid: number): Promise<number> {
  return statusField(pid, 'VmHWM')
}

export function currentRss(pid: number): Promise<number> {
  return statusField(pid, 'VmRSS')
}

/** Resets VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`, Linux >= 4.0), so a peak can be taken per workload. */
export async function resetPeakRss(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** Whether this build's `serve` has `--workers` (issue #16); today's main does not. */
export function cliHasWorkers(cli = CLI): boolean {
  return /--workers\b/.test(execFileSync(process.execPath, [cli, 'serve', '--help'], { encoding: 'utf8' }))
}

/** `pid` and every live descendant of it (node:cluster workers are children of the serve process), `pid` first. */
export async function processTree(pid: number): Promise<number[]> {
  const children = new Map<number, number[]>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)])
    } catch {
      // gone
    }
  }
  const out = [pid]
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []))
  return out
}

/** VmHWM of each process of the tree (bytes), by pid; a process that ended meanwhile is left out. */
export async function peakRssOfTree(pid: number): Promise<Map<number, number>> {
  const out = new Map<number, number>()
  for (const p of await processTree(pid))
    await peakRss(p).then(
      (b) => out.set(p, b),
      () => {},
    )
  return out
}

export async function resetPeakRssOfTree(pid: number): Promise<void> {
  for (const p of await processTree(pid)) await resetPeakRss(p)
}
