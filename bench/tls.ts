/**
 * TLS rows (issue #11): regmirror's TLS listener beside CNCF distribution in proxy mode with `http.tls`, the same
 * certificate, the same upstream, on one machine. h2load (Debian nghttp2-client, a C client that discards bodies,
 * so the client is not the bottleneck) drives the cache-hit and tag workloads; a cold pull is a small undici client
 * that verifies every blob. Go clients' HTTP/2 windows are used (`-w 22 -W 30`: 4 MiB a stream, 1 GiB a connection).
 *
 *   npm run build && node --import tsx bench/tls.ts [--rounds R] [--mib M]
 *
 * Prints a markdown table of medians and ratios (regmirror / distribution) for bench/RESULTS.md.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { makeCa, makeServerCert } from '../test/helpers/certs.js'
import { runProgram, startProgram, waitUntilReady, type ChildProgram } from '../test/helpers/child-program.js'
import { startDistribution } from '../test/helpers/distribution.js'
import { freePort } from '../test/helpers/free-port.js'
import { buildOciLayout, type OciLayout } from '../test/helpers/oci-image.js'
import { pushLayout } from '../test/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/helpers/temp-dir.js'
import { CLI } from './servers.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, mib: { type: 'string', default: '150' } } })
const ROUNDS = Number(values.rounds)
const MiB = 1024 * 1024
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'

interface Server {
  name: string
  url: string
  stop(): Promise<void>
}

async function startTlsDistribution(work: string, upstream: string, cert: string, key: string): Promise<Server> {
  const port = await freePort()
  const config = join(work, 'dist-tls.yml')
  await writeFile(
    config,
    JSON.stringify({
      version: '0.1',
      log: { level: 'warn', accesslog: { disabled: true } },
      storage: { filesystem: { rootdirectory: join(work, 'dist-storage') }, maintenance: { uploadpurging: { enabled: false } } },
      http: { addr: `127.0.0.1:${port}`, tls: { certificate: cert, key } },
      proxy: { remoteurl: upstream },
    }),
  )
  const program: ChildProgram = startProgram('distribution-tls', 'docker-registry', ['serve', config], {
    env: { PATH: process.env.PATH ?? '' },
  })
  const url = `https://127.0.0.1:${port}`
  await waitUntilReady(
    program,
    async () =>
      (await runProgram('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `${url}/v2/`]).catch(() => ({ stdout: '' }))).stdout ===
      '200',
  )
  return { name: 'distribution', url, stop: () => program.stop() }
}

async function startTlsRegmirror(work: string, upstream: string, cert: string, key: string): Promise<Server> {
  const [plain, tls] = [await freePort(), await freePort()]
  const args = [CLI, 'serve', '--listen', `127.0.0.1:${plain}`, '--tls-listen', `127.0.0.1:${tls}`, '--tls-cert', cert, '--tls-key', key]
  args.push('--data', join(work, 'regmirror-data'), '--upstream', `bench=${upstream}`, '--default-upstream', 'bench', '--max-size', '50GiB')
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGMIRROR_')))
  const program = startProgram('regmirror', process.execPath, args, { env })
  await waitUntilReady(program, async () => program.output().includes('"regmirror listening"'))
  return { name: 'regmirror', url: `https://127.0.0.1:${tls}`, stop: () => program.stop() }
}

/** A pull like a node's: tag, manifest, then the blobs 3 at a time, each verified; ms. */
async function coldPull(base: string, repo: string, ca: Buffer): Promise<number> {
  const dispatcher = new Agent({ connect: { ca } })
  const started = performance.now()
  const get = async (path: string, accept?: string) => {
    const res = await request(`${base}${path}`, { dispatcher, headers: accept ? { accept } : {} })
    if (res.statusCode !== 200) throw new Error(`${base}${path}: ${res.statusCode} ${await res.body.text()}`)
    const hash = createHash('sha256')
    const keep: Buffer[] = []
    for await (const c of res.body) {
      hash.update(c as Buffer)
      if (accept) keep.push(c as Buffer)
    }
    return { digest: `sha256:${hash.digest('hex')}`, body: Buffer.concat(keep) }
  }
  const m = JSON.parse((await get(`/v2/${repo}/manifests/v1`, ACCEPT)).body.toString()) as {
    config: { digest: string }
    layers: { digest: string }[]
  }
  const blobs = [m.config, ...m.layers].map((d) => d.digest)
  let next = 0
  await Promise.all(
    [0, 1, 2].map(async () => {
      for (let d = blobs[next++]; d; d = blobs[next++]) if ((await get(`/v2/${repo}/blobs/${d}`)).digest !== d) throw new Error(`bad ${d}`)
    }),
  )
  await dispatcher.close()
  return performance.now() - started
}

/** h2load's "finished in …, N req/s, M MB/s" (or with --h1 for HTTP/1.1). */
async function h2load(url: string, args: string[]): Promise<{ reqPerSec: number; mbPerSec: number }> {
  const out = (await runProgram('h2load', [...args, '-w', '22', '-W', '30', '-H', `accept: ${ACCEPT}`, url], { timeoutMs: 600_000 })).stdout
  const m = /finished in [\d.]+m?s, ([\d.]+) req\/s, ([\d.]+)([KMG]B)\/s/.exec(out)
  if (!m || !/succeeded/.test(out) || / 0 succeeded/.test(out)) throw new Error(`h2load: ${out}`)
  const unit = { KB: 1 / 1024, MB: 1, GB: 1024 }[m[3] as 'KB' | 'MB' | 'GB']
  if (!/status codes: (\d+) 2xx/.test(out) || /, [1-9]\d* 4xx|, [1-9]\d* 5xx/.test(out)) throw new Error(`h2load errors: ${out}`)
  // h2load's MB are 2^20 bytes; the table uses 10^6.
  return { reqPerSec: Number(m[1]), mbPerSec: (Number(m[2]) * unit * MiB) / 1e6 }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function main(): Promise<void> {
  const work = await makeTempDir('bench-tls')
  try {
    const ca = await makeCa(work)
    const { cert, key } = await makeServerCert(ca, 'bench')
    const caPem = readFileSync(ca.caCert)
    const upstream = await startDistribution({ auth: 'none' })
    const hot = await buildOciLayout(join(work, 'hot'), { tag: 'v1', layerSizes: [Number(values.mib) * MiB] })
    await pushLayout(hot.layoutDir, 'v1', upstream.hostPort, 'tls/hot')
    const servers = [
      await startTlsDistribution(work, upstream.directUrl, cert, key),
      await startTlsRegmirror(work, upstream.directUrl, cert, key),
    ]
    const rows: Record<string, Record<string, number[]>> = {}
    const add = (row: string, server: string, v: number) => ((rows[row] ??= {})[server] ??= []).push(v)
    for (let round = 0; round < ROUNDS; round++) {
      const cold = await buildOciLayout(join(work, `cold-${round}`), { tag: 'v1', layerSizes: [100 * MiB, 100 * MiB, 100 * MiB] })
      await pushLayout(cold.layoutDir, 'v1', upstream.hostPort, `tls/cold${round}`)
      for (const s of servers) {
        add('cold pull (300 MiB, 3 layers, HTTP/1.1 over TLS): wall ms', s.name, await coldPull(s.url, `tls/cold${round}`, caPem))
        await coldPull(s.url, 'tls/hot', caPem) // warms the hot image
        const layer = `${s.url}/v2/tls/hot/blobs/${(hot as OciLayout).layerDigests[0]}`
        // The cold pull leaves hundreds of MiB of dirty pages whose writeback would compete with
        // the first hit rows: flush them, and let one untimed pass settle both servers.
        await runProgram('sync', [])
        await h2load(layer, ['--h1', '-n', '8', '-c', '4'])
        add(
          'cache-hit throughput, HTTP/1.1 over TLS, 4 connections: MB/s',
          s.name,
          (await h2load(layer, ['--h1', '-n', '48', '-c', '4'])).mbPerSec,
        )
        add(
          'cache-hit throughput, HTTP/2, 4 streams on 1 connection: MB/s',
          s.name,
          (await h2load(layer, ['-n', '48', '-c', '1', '-m', '4'])).mbPerSec,
        )
        add('cache-hit throughput, HTTP/2, 4 connections: MB/s', s.name, (await h2load(layer, ['-n', '48', '-c', '4', '-m', '1'])).mbPerSec)
        const tag = `${s.url}/v2/tls/hot/manifests/v1`
        add(
          'tag manifest GET, HTTP/2, 4 connections × 16 streams: req/s',
          s.name,
          (await h2load(tag, ['-n', '20000', '-c', '4', '-m', '16'])).reqPerSec,
        )
      }
      process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`)
    }
    console.log(`| row | distribution | regmirror | ratio |\n|---|---|---|---|`)
    for (const [row, by] of Object.entries(rows)) {
      const d = median(by.distribution!)
      const r = median(by.regmirror!)
      console.log(`| ${row} | ${d.toFixed(0)} | ${r.toFixed(0)} | ${(r / d).toFixed(2)} |`)
    }
    console.log(`\nmedians of ${ROUNDS} rounds; per round: ${JSON.stringify(rows)}`)
    for (const s of servers) await s.stop()
    await upstream.stop()
  } finally {
    await removeTempDir(work)
  }
}

await main()
