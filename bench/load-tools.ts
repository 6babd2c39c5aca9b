/**
 * The real clients of the issue #16 rows: wrk (Debian `wrk`) for cache hits and tag requests, curl for one cold
 * blob, skopeo (as the e2e suite runs it: test/helpers/skopeo.ts) for pulls into a directory.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runProgram } from '../test/helpers/child-program.js'
import { skopeoCopy } from '../test/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/helpers/temp-dir.js'

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ')

// wrk's own summary rounds bytes to 2 digits; this prints its exact counters.
const WRK_SCRIPT = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK bytes=%d us=%d requests=%d status=%d sockerr=%d p99us=%d\\n", summary.bytes,
    summary.duration, summary.requests, e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(99)))
end
`

export interface WrkResult {
  requests: number
  bytes: number
  seconds: number
  reqPerS: number
  /** 10^6 bytes per second, headers included (negligible next to a blob). */
  mbPerS: number
  p99Ms: number
}

/** `wrk -t threads -c connections -d seconds` on one URL; fails on any non-2xx answer or socket error. */
export async function wrk(url: string, o: { connections: number; seconds: number; headers?: string[] }): Promise<WrkResult> {
  const dir = await makeTempDir('bench-wrk')
  try {
    const script = join(dir, 'summary.lua')
    await writeFile(script, WRK_SCRIPT)
    const threads = Math.min(2, o.connections)
    const args = ['-t', String(threads), '-c', String(o.connections), '-d', `${o.seconds}s`, '--timeout', '60s', '-s', script]
    for (const h of o.headers ?? []) args.push('-H', h)
    const { stdout } = await runProgram('wrk', [...args, url], { timeoutMs: (o.seconds + 120) * 1000 })
    const m = /WRK bytes=(\d+) us=(\d+) requests=(\d+) status=(\d+) sockerr=(\d+) p99us=(\d+)/.exec(stdout)
    if (!m) throw new Error(`wrk: no summary in\n${stdout}`)
    const [bytes, us, requests, status, sockErr, p99] = m.slice(1).map(Number) as [number, number, number, number, number, number]
    if (status > 0 || requests === 0) throw new Error(`wrk ${url}: ${status} non-2xx answers, ${requests} requests\n${stdout}`)
    // A socket error is the connections left mid-body when the duration ends; more than that is a failure.
    if (sockErr > o.connections) throw new Error(`wrk ${url}: ${sockErr} socket errors\n${stdout}`)
    const seconds = us / 1e6
    return { requests, bytes, seconds, reqPerS: requests / seconds, mbPerS: bytes / 1e6 / seconds, p99Ms: p99 / 1000 }
  } finally {
    await removeTempDir(dir)
  }
}

/** One GET with curl, body to /dev/null; checks status and size. Seconds to the first byte and to the last. */
export async function curlBlob(url: string, size: number): Promise<{ firstByteS: number; totalS: number }> {
  const { stdout } = await runProgram(
    'curl',
    ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_starttransfer} %{time_total}', url],
    {
      timeoutMs: 600_000,
    },
  )
  const [code, got, first, total] = stdout.trim().split(' ')
  if (code !== '200' || Number(got) !== size) throw new Error(`curl ${url}: ${code}, ${got} of ${size} bytes`)
  return { firstByteS: Number(first), totalS: Number(total) }
}

/**
 * n skopeo processes pull `hostPort/repo:tag` into their own directories at once (skopeo checks every digest);
 * wall time from the first start to the last exit, then the directories are removed. A pull that fails is run
 * again (up to 3 times, as a user or a kubelet would retry): distribution 2.8's proxy answers some of 32 concurrent
 * cold pulls with 500. The failed attempts are counted and reported.
 */
export async function skopeoPulls(
  hostPort: string,
  repo: string,
  tag: string,
  n: number,
): Promise<{ ms: number; each: number[]; failures: number; errors: string[] }> {
  const dir = await makeTempDir('bench-skopeo-pulls')
  const errors: string[] = []
  try {
    const started = performance.now()
    const each = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        for (let attempt = 1; ; attempt++) {
          try {
            await skopeoCopy(`docker://${hostPort}/${repo}:${tag}`, `dir:${join(dir, `${i}-${attempt}`)}`, { timeoutMs: 900_000 })
            return performance.now() - started
          } catch (err) {
            const msg = err instanceof Error ? err.message : String(err)
            errors.push(msg.slice(msg.lastIndexOf('\n') + 1, msg.lastIndexOf('\n') + 300))
            if (attempt >= 3) throw err
          }
        }
      }),
    )
    return { ms: performance.now() - started, each, failures: errors.length, errors }
  } finally {
    await removeTempDir(dir)
  }
}
