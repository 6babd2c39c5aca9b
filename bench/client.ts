/**
 * The bench's registry client: what a pulling node does, with undici. Runs inside a worker thread (see worker.ts)
 * so its hashing and socket work never share an event loop with the counting proxies in the main thread.
 */
import { createHash } from 'node:crypto'
import { Agent, Pool, request, type Dispatcher } from 'undici'

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ')

export interface PullResult {
  ms: number
  /** Bytes of manifest + blobs received and verified. */
  bytes: number
}

interface Descriptor {
  digest: string
  size: number
}

function hex(digest: string): string {
  if (!digest.startsWith('sha256:')) throw new Error(`not a sha256 digest: ${digest}`)
  return digest.slice('sha256:'.length)
}

async function getVerified(base: string, path: string, digest: string, dispatcher: Dispatcher, accept?: string): Promise<Buffer | number> {
  const res = await request(`${base}${path}`, { dispatcher, headers: accept ? { accept } : {} })
  if (res.statusCode !== 200) {
    const text = await res.body.text()
    throw new Error(`GET ${path}: ${res.statusCode} ${text.slice(0, 300)}`)
  }
  const hash = createHash('sha256')
  let n = 0
  const keep: Buffer[] = []
  for await (const chunk of res.body) {
    const buf = chunk as Buffer
    hash.update(buf)
    n += buf.length
    if (accept) keep.push(buf)
  }
  const got = hash.digest('hex')
  if (got !== hex(digest)) throw new Error(`GET ${path}: sha256 ${got}, expected ${digest}`)
  return accept ? Buffer.concat(keep) : n
}

/** Runs `tasks` with at most `limit` at a time. */
async function limited(limit: number, tasks: (() => Promise<void>)[]): Promise<void> {
  let next = 0
  const lanes = Array.from({ length: Math.min(limit, tasks.length) }, async () => {
    while (next < tasks.length) {
      const task = tasks[next++]!
      await task()
    }
  })
  await Promise.all(lanes)
}

/**
 * One pull as containerd does it: HEAD the tag for its digest, GET the manifest by digest, then the config and
 * the layers, 3 at a time, each body read to the end and checked against its sha256. Its own Agent (own
 * connections), like a separate node.
 */
export async function pull(base: string, repo: string, tag: string, parallel = 3): Promise<PullResult> {
  const agent = new Agent({ connections: parallel + 1 })
  const started = performance.now()
  try {
    const head = await request(`${base}/v2/${repo}/manifests/${tag}`, {
      method: 'HEAD',
      dispatcher: agent,
      headers: { accept: MANIFEST_ACCEPT },
    })
    await head.body.dump()
    const digest = head.headers['docker-content-digest']
    if (head.statusCode !== 200 || typeof digest !== 'string')
      throw new Error(`HEAD ${repo}:${tag}: ${head.statusCode}, digest ${String(digest)}`)
    const body = (await getVerified(base, `/v2/${repo}/manifests/${digest}`, digest, agent, MANIFEST_ACCEPT)) as Buffer
    const manifest = JSON.parse(body.toString('utf8')) as { config: Descriptor; layers: Descriptor[] }
    let bytes = body.length
    const blobs = [manifest.config, ...manifest.layers]
    await limited(
      parallel,
      blobs.map((b) => async () => {
        const n = (await getVerified(base, `/v2/${repo}/blobs/${b.digest}`, b.digest, agent)) as number
        if (n !== b.size) throw new Error(`blob ${b.digest}: ${n} bytes, expected ${b.size}`)
        bytes += n
      }),
    )
    return { ms: performance.now() - started, bytes }
  } finally {
    await agent.close()
  }
}

/** N pulls of one image started at once; wall time until the last one finishes. */
export async function concurrentPulls(
  base: string,
  repo: string,
  tag: string,
  n: number,
): Promise<{ ms: number; each: number[]; failures: number; errors: string[] }> {
  const started = performance.now()
  const errors: string[] = []
  // A pull that fails is pulled again, up to 3 attempts, as a kubelet would: distribution 2.8's proxy answers some
  // of 32 concurrent cold pulls with 500. The failed attempts are reported, and the wall time includes them.
  const each = await Promise.all(
    Array.from({ length: n }, async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await pull(base, repo, tag)
          return performance.now() - started
        } catch (err) {
          errors.push(String(err instanceof Error ? err.message : err).slice(0, 300))
          if (attempt >= 3) throw err
        }
      }
    }),
  )
  return { ms: performance.now() - started, each, failures: errors.length, errors }
}

/** Time to the response headers and to the first body byte of a blob GET; then reads (and verifies) the rest. */
export async function firstByte(
  base: string,
  repo: string,
  digest: string,
): Promise<{ headersMs: number; firstByteMs: number; totalMs: number; bytes: number }> {
  const agent = new Agent({ connections: 1 })
  try {
    const started = performance.now()
    const res = await request(`${base}/v2/${repo}/blobs/${digest}`, { dispatcher: agent })
    const headersMs = performance.now() - started
    if (res.statusCode !== 200) throw new Error(`GET blob ${digest}: ${res.statusCode} ${(await res.body.text()).slice(0, 300)}`)
    let firstByteMs = -1
    let bytes = 0
    const hash = createHash('sha256')
    for await (const chunk of res.body) {
      if (firstByteMs < 0) firstByteMs = performance.now() - started
      hash.update(chunk as Buffer)
      bytes += (chunk as Buffer).length
    }
    const totalMs = performance.now() - started
    if (hash.digest('hex') !== hex(digest)) throw new Error(`blob ${digest}: wrong sha256`)
    return { headersMs, firstByteMs, totalMs, bytes }
  } finally {
    await agent.close()
  }
}

/**
 * Cache-hit throughput: `clients` connections each GET the blob `rounds` times back to back, bodies counted but not
 * hashed (the point is the server's read path, not the client's sha256). MB/s = 10^6 bytes per second.
 */
export async function blobThroughput(
  base: string,
  repo: string,
  digest: string,
  clients: number,
  rounds: number,
): Promise<{ ms: number; bytes: number; mbPerS: number }> {
  const pool = new Pool(base, { connections: clients })
  try {
    const started = performance.now()
    let bytes = 0
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = 0; i < rounds; i++) {
          const res = await pool.request({ method: 'GET', path: `/v2/${repo}/blobs/${digest}` })
          if (res.statusCode !== 200) throw new Error(`GET blob: ${res.statusCode}`)
          for await (const chunk of res.body) bytes += (chunk as Buffer).length
        }
      }),
    )
    const ms = performance.now() - started
    return { ms, bytes, mbPerS: bytes / 1e6 / (ms / 1000) }
  } finally {
    await pool.close()
  }
}

export interface LoadResult {
  requests: number
  errors: number
  seconds: number
  reqPerS: number
  p50Ms: number
  p99Ms: number
}

/**
 * A closed-loop load generator: `connections` keep-alive connections (an undici Pool), each sending the next request
 * as soon as the previous answer was read, for `seconds` after a short warm-up. Counts 200 answers.
 */
export async function load(base: string, path: string, connections: number, seconds: number, warmupSeconds = 1): Promise<LoadResult> {
  const pool = new Pool(base, { connections, pipelining: 1 })
  const headers = { accept: MANIFEST_ACCEPT }
  try {
    const lane = async (until: number, record: boolean, lat: number[], counts: { ok: number; err: number }): Promise<void> => {
      while (performance.now() < until) {
        const t0 = performance.now()
        try {
          const res = await pool.request({ method: 'GET', path, headers })
          await res.body.dump()
          if (record) {
            if (res.statusCode === 200) {
              counts.ok++
              lat.push(performance.now() - t0)
            } else counts.err++
          }
        } catch {
          if (record) counts.err++
        }
      }
    }
    const warm = { ok: 0, err: 0 }
    const warmUntil = performance.now() + warmupSeconds * 1000
    await Promise.all(Array.from({ length: connections }, () => lane(warmUntil, false, [], warm)))
    const lat: number[] = []
    const counts = { ok: 0, err: 0 }
    const started = performance.now()
    const until = started + seconds * 1000
    await Promise.all(Array.from({ length: connections }, () => lane(until, true, lat, counts)))
    const elapsed = (performance.now() - started) / 1000
    lat.sort((a, b) => a - b)
    const pct = (p: number): number => (lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!)
    return { requests: counts.ok, errors: counts.err, seconds: elapsed, reqPerS: counts.ok / elapsed, p50Ms: pct(0.5), p99Ms: pct(0.99) }
  } finally {
    await pool.close()
  }
}
