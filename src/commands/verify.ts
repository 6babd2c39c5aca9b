import { verifyDataDir } from '../cache/verify.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import { formatBytes } from '../format.js'
import type { Command } from './shared.js'

export const verifyCommand: Command = {
  usage: `regmirror verify [--repair]
  Re-hashes every cached blob and manifest; reports corrupt, orphaned and stray files (with --repair,
  removes them). Exit 1 while problems remain; temp files an interrupted write left are reported
  but harmless.`,

  async run(argv) {
    const { flags, options } = parseFlags(argv, { repair: { type: 'boolean' } })
    const repair = options.repair === true
    const config = await loadConfig({ flags, env: process.env })
    const tty = process.stderr.isTTY === true
    let last = 0
    const result = await verifyDataDir(config.dataDir, {
      repair,
      onProgress: (p) => {
        if (!tty) return
        const now = Date.now()
        if (now - last < 100 && p.done !== p.total) return
        last = now
        const pct = p.bytesTotal === 0 ? 100 : Math.floor((p.bytesDone / p.bytesTotal) * 100)
        process.stderr.write(
          `\r\x1b[Kverifying ${p.done}/${p.total} files, ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} (${pct}%)`,
        )
      },
      onProblem: (p) => {
        if (tty) process.stderr.write('\r\x1b[K')
        const action = p.repaired === true ? ' (removed)' : p.repaired === false ? ' (could not remove)' : ''
        process.stdout.write(`${p.kind} ${p.path}${p.detail ? ` ${p.detail}` : ''}${action}\n`)
      },
    })
    if (tty) process.stderr.write('\r\x1b[K')
    const counts = new Map<string, number>()
    for (const p of result.problems) counts.set(p.kind, (counts.get(p.kind) ?? 0) + 1)
    const temps = counts.get('temp-file') ?? 0
    counts.delete('temp-file')
    let found = counts.size === 0 ? 'no problems' : [...counts].map(([k, n]) => `${n} ${k}`).join(', ')
    if (temps > 0) found += ` (and ${temps} temp-file left by an interrupted write: harmless, --repair removes them)`
    const repaired = repair ? `; ${result.problems.length - result.remaining} removed, ${result.remaining} remaining` : ''
    process.stdout.write(`verify: ${result.blobs} files (${formatBytes(result.bytes)}) checked in ${config.dataDir}: ${found}${repaired}\n`)
    return result.remaining === 0 ? 0 : 1
  },
}
