/**
 * The bench client of bench/s3.ts: client.ts's pull (HEAD the tag, GET the manifest by digest, the blobs 3 at a
 * time, every body checked against its sha256) and hit throughput, but following a blob GET's redirect to another
 * origin as registry clients do (regmirror's storage.s3.redirect answers 307 with a presigned URL). undici's
 * redirect interceptor, one hop: a presigned URL that redirected again would be a fault.
 */
import { createHash } from 'node:crypto'
import { Agent, interceptors, request, type Dispatcher } from 'undici'
import { MANIFEST_ACCEPT } from '../src/oci/media-types.js'

function following(connections: number): Dispatcher {
  return new Agent({ connections }).compose(interceptors.redirect({ maxRedirections: 1 }))
}

async function getVerified(url: string, digest: string, dispatcher: Dispatcher, accept?: string): Promise<Buffer | number> {
  const res = await request(url, { dispatcher, headers: accept ? { accept } : {} })
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${(await res.body.text()).slice(0, 300)}`)
  const hash = createHash('sha256')
  const keep: Buffer[] = []
  let n = 0
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer)
    n += (chunk as Buffer).length
    if (accept) keep.push(chunk as Buffer)
  }
  if (`sha256:${hash.digest('hex')}` !== digest) throw new Error(`GET ${url}: wrong sha256`)
  return accept ? Buffer.concat(keep) : n
}

export async function pullFollowing(base: string, repo: string, tag: string, parallel = 3): Promise<{ ms: number; bytes: number }> {
  const agent = following(parallel + 1)
  const started = performance.now()
  try {
    const head = await request(`${base}/v2/${repo}/manifests/${tag}`, {
      method: 'HEAD',
      dispatcher: agent,
      headers: { accept: MANIFEST_ACCEPT },
    })
    await head.body.dump()
    const digest = head.headers['docker-content-digest']
    if (head.statusCode !== 200 || typeof digest !== 'string') throw new Error(`HEAD ${repo}:${tag}: ${head.statusCode}`)
    const body = (await getVerified(`${base}/v2/${repo}/manifests/${digest}`, digest, agent, MANIFEST_ACCEPT)) as Buffer
    const manifest = JSON.parse(body.toString('utf8')) as { config: { digest: string }; layers: { digest: string }[] }
    const blobs = [manifest.config, ...manifest.layers]
    let bytes = body.length
    let next = 0
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < blobs.length) {
          const b = blobs[next++]!
          bytes += (await getVerified(`${base}/v2/${repo}/blobs/${b.digest}`, b.digest, agent)) as number
        }
      }),
    )
    return { ms: performance.now() - started, bytes }
  } finally {
    await agent.close()
  }
}

/** `clients` connections each GET the blob `rounds` times; bodies counted, not hashed. MB = 10^6 bytes. */
export async function throughputFollowing(
  base: string,
  repo: string,
  digest: string,
  clients: number,
  rounds: number,
): Promise<{ mbPerS: number }> {
  const agent = following(clients)
  try {
    const started = performance.now()
    let bytes = 0
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = 0; i < rounds; i++) {
          const res = await request(`${base}/v2/${repo}/blobs/${digest}`, { dispatcher: agent })
          if (res.statusCode !== 200) throw new Error(`GET blob: ${res.statusCode}`)
          for await (const chunk of res.body) bytes += (chunk as Buffer).length
        }
      }),
    )
    return { mbPerS: bytes / 1e6 / ((performance.now() - started) / 1000) }
  } finally {
    await agent.close()
  }
}
