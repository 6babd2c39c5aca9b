/** The table of bench/workers.ts: ratios regmirror / distribution against issue #16's goals, printed and written. */
import { execFileSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { dirname } from 'node:path'
import type { Traffic } from './access-log.js'
import type { WrkResult } from './load-tools.js'
import { CLI } from './servers.js'

const MiB = 1024 * 1024
export type MirrorName = 'distribution' | 'regmirror'
export interface Measured {
  value: unknown
  /** What the upstream's access log shows for this workload. */
  upstream: Traffic
  /** VmHWM by pid of the mirror's process tree, reset before the workload. */
  peakRss: Map<number, number>
  /** The machine's 1-minute load average when the workload started: how quiet the run was. */
  load: number
}
interface Goal {
  /** 'ratio': regmirror / distribution against target; 'value': regmirror's own value. */
  of: 'ratio' | 'value'
  op: '≤' | '≥' | '='
  target: number
}
interface Row {
  name: string
  unit: string
  digits: number
  distribution: number
  regmirror: number
  goal?: Goal
}

export interface ReportInput {
  out: string
  quick: boolean
  started: number
  res: Record<string, Partial<Record<MirrorName, Measured>>>
  /** Bytes of each image (manifest + config + layers), by workload key prefix. */
  sizes: Record<string, number>
  concurrency: number[]
  blobMiB: number
  seconds: number
  upstreamCurl: { firstByteS: number; totalS: number }
  mainPid: number
  workers: string
}

const fmt = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : '–')
const ratioOf = (r: Row): number => r.regmirror / r.distribution
function met(r: Row): boolean | undefined {
  if (!r.goal) return undefined
  const x = r.goal.of === 'ratio' ? ratioOf(r) : r.regmirror
  if (!Number.isFinite(x)) return false
  if (r.goal.op === '=') return Math.abs(x - r.goal.target) < 0.0005
  return r.goal.op === '≤' ? x <= r.goal.target : x >= r.goal.target
}
const goalText = (g: Goal | undefined, unit: string): string =>
  !g ? '' : g.of === 'ratio' ? `${g.op} ${g.target}× distribution` : `${g.op} ${g.target.toFixed(unit === '× image' ? 3 : 0)} ${unit}`

function rowsOf(x: ReportInput): Row[] {
  const val = <T>(key: string, m: MirrorName): T | undefined => x.res[key]?.[m]?.value as T | undefined
  const both = (f: (m: MirrorName) => number | undefined) => ({ distribution: f('distribution') ?? NaN, regmirror: f('regmirror') ?? NaN })
  const wall = (key: string) => both((m) => (val<{ ms: number }>(key, m)?.ms ?? NaN) / 1000)
  const mib = (key: string): string => `${((x.sizes[key] ?? NaN) / MiB).toFixed(0)} MiB`
  const rows: Row[] = [
    {
      name: `single cold pull, ${mib('cold-skopeo')} 3 layers, skopeo: wall`,
      unit: 's',
      digits: 2,
      ...wall('cold-skopeo'),
      goal: { of: 'ratio', op: '≤', target: 1.0 },
    },
    { name: `single cold pull, client.ts (skopeo's row counts): wall`, unit: 's', digits: 2, ...wall('cold-client') },
    {
      name: `one cold ${x.blobMiB} MiB blob, curl: whole body (upstream's own ${x.upstreamCurl.totalS.toFixed(2)} s)`,
      unit: 's',
      digits: 2,
      ...both((m) => val<{ totalS: number }>('blob-curl', m)?.totalS),
      goal: { of: 'ratio', op: '≤', target: 1.5 },
    },
    {
      name: `one cold blob, curl: first byte (upstream's own ${(x.upstreamCurl.firstByteS * 1000).toFixed(1)} ms)`,
      unit: 'ms',
      digits: 1,
      ...both((m) => (val<{ firstByteS: number }>('blob-curl', m)?.firstByteS ?? NaN) * 1000),
    },
    ...x.concurrency.flatMap((n): Row[] => [
      {
        name: `${n} concurrent cold pulls, ${mib(`conc${n}-skopeo`)} 3 layers, skopeo: wall`,
        unit: 's',
        digits: 2,
        ...wall(`conc${n}-skopeo`),
        goal: { of: 'ratio', op: '≤', target: 0.35 },
      },
      ...(['skopeo', 'client'] as const).map((c) => ({
        name: `${n} concurrent cold pulls, ${c === 'client' ? 'client.ts' : c}: failed pulls, run again`,
        unit: 'count',
        digits: 0,
        ...both((m) => val<{ failures: number }>(`conc${n}-${c}`, m)?.failures),
      })),
      { name: `${n} concurrent cold pulls, client.ts (skopeo's row counts): wall`, unit: 's', digits: 2, ...wall(`conc${n}-client`) },
    ]),
    {
      name: `tag manifest GET, cached tag, wrk 16 connections`,
      unit: 'req/s',
      digits: 0,
      ...both((m) => val<WrkResult>('tag', m)?.reqPerS),
      goal: { of: 'ratio', op: '≥', target: 60 },
    },
    { name: 'tag manifest GET: p99 latency', unit: 'ms', digits: 2, ...both((m) => val<WrkResult>('tag', m)?.p99Ms) },
    ...[4, 16].map((c): Row => ({
      name: `cache-hit throughput, ${x.blobMiB} MiB blob, wrk ${c} connections`,
      unit: 'MB/s',
      digits: 0,
      ...both((m) => val<WrkResult>(`hit${c}`, m)?.mbPerS),
      goal: { of: 'ratio', op: '≥', target: 1.3 },
    })),
    ...['cold-skopeo', 'cold-client', 'blob-curl', ...x.concurrency.flatMap((n) => [`conc${n}-skopeo`, `conc${n}-client`])].map(
      (key): Row => ({
        name: `upstream bytes (its access log), ${key}`,
        unit: '× image',
        digits: 3,
        ...both((m) => (x.res[key]?.[m]?.upstream.bytes ?? NaN) / (x.sizes[key] ?? NaN)),
        goal: { of: 'value', op: '=', target: 1 },
      }),
    ),
  ]
  return [...rows, ...rssRows(x)]
}

/** Peak RSS over all workloads, per process: distribution's one, regmirror's primary and each worker, and their sum. */
function rssRows(x: ReportInput): Row[] {
  const peaks = (m: MirrorName): Map<number, number> => {
    const out = new Map<number, number>()
    for (const r of Object.values(x.res)) for (const [pid, b] of r[m]?.peakRss ?? []) out.set(pid, Math.max(out.get(pid) ?? 0, b))
    return out
  }
  const d = peaks('distribution')
  const r = peaks('regmirror')
  const dMax = Math.max(...d.values()) / MiB
  const single = r.size === 1
  const rows: Row[] = [...r].map(([pid, b]) => ({
    name: `peak RSS, regmirror ${single ? 'process' : pid === x.mainPid ? 'primary' : 'worker'} (pid ${pid}); distribution's one process`,
    unit: 'MiB',
    digits: 1,
    distribution: dMax,
    regmirror: b / MiB,
    goal: { of: 'value', op: '≤', target: 120 },
  }))
  const sum = [...r.values()].reduce((a, b) => a + b, 0) / MiB
  if (!single)
    rows.push({
      name: `peak RSS, regmirror total of ${r.size} processes (sum of their peaks)`,
      unit: 'MiB',
      digits: 1,
      distribution: dMax,
      regmirror: sum,
    })
  return rows
}

function machine(x: ReportInput): string[] {
  const run = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim()
    } catch {
      return 'unknown'
    }
  }
  return [
    `- date: ${new Date().toISOString()}; cpu: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}; node ${process.version}; load average ${loadavg()[0]!.toFixed(1)} at the end`,
    `- distribution: ${run('docker-registry', ['--version'])}`,
    `- regmirror: ${CLI} at ${run('git', ['-C', dirname(CLI), 'rev-parse', '--short', 'HEAD'])}; ${x.workers}`,
    `- mode: ${x.quick ? 'quick (small sizes, not for the record)' : 'full'}; wrk runs ${x.seconds} s per row`,
  ]
}

export async function report(x: ReportInput): Promise<void> {
  const rows = rowsOf(x)
  const cells = rows.map((r) => {
    const ratio = ratioOf(r)
    const m = met(r)
    return [
      r.name,
      r.unit,
      fmt(r.distribution, r.digits),
      fmt(r.regmirror, r.digits),
      Number.isFinite(ratio) ? `${ratio.toFixed(ratio < 0.1 ? 3 : 2)}×` : '–',
      goalText(r.goal, r.unit),
      m === undefined ? '' : m ? 'met' : '**missed**',
    ]
  })
  const details = (['distribution', 'regmirror'] as const).flatMap((m) =>
    Object.entries(x.res).map(([key, r]) => {
      const d = r[m]!
      const rss = [...d.peakRss.values()].reduce((a, b) => a + b, 0)
      return `| ${m} | ${key} | ${d.upstream.requests} | ${d.upstream.manifestRequests} | ${d.upstream.blobGets} | ${(d.upstream.bytes / MiB).toFixed(1)} | ${(rss / MiB).toFixed(1)} | ${d.load.toFixed(1)} |`
    }),
  )
  const generated = [
    '# Issue #16 benchmark: regmirror vs CNCF distribution (proxy mode), real clients',
    '',
    `Generated by \`node --import tsx bench/workers.ts${x.quick ? ' --quick' : ''}\`; total run time ${((Date.now() - x.started) / 1000).toFixed(0)} s.`,
    '',
    ...machine(x),
    '',
    '| row | unit | distribution | regmirror | regmirror / distribution | goal | met |',
    '|---|---|---:|---:|---:|---|---|',
    ...cells.map((c) => `| ${c.join(' | ')} |`),
    '',
    `Per workload: the upstream's access log (requests, manifest requests, blob GETs, body MiB), the mirror's peak RSS (sum over its processes) and the machine's load average as it started (${cpus().length} CPUs).`,
    '',
    '| mirror | workload | requests | manifest | blob GETs | body MiB | peak RSS MiB | load |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...details,
    '',
  ].join('\n')
  const MARK = '<!-- analysis: hand-written, kept across runs -->'
  const previous = await readFile(x.out, 'utf8').catch(() => '')
  const analysis = previous.includes(MARK) ? previous.slice(previous.indexOf(MARK)) : `${MARK}\n\n## Analysis\n\n(to be written)\n`
  await writeFile(x.out, `${generated}\n${analysis}`)
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)))
  process.stdout.write(`\n${cells.map((c) => c.map((s, i) => s.padEnd(widths[i]!)).join('  ')).join('\n')}\n\nwritten to ${x.out}\n`)
}
