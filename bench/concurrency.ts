// N concurrent cold pulls of one multi-layer image through a fresh mirror (the built program,
// a child process), against the fake registry serving blobs at a fixed rate. Reports total
// time, upstream bytes as a multiple of the image size (goal 1.00x) and the mirror's peak RSS
// (goal: flat in N and in blob size, under 120 MiB).
//
//   npm run build && node --import tsx bench/concurrency.ts [--n 8,32] [--sizes small,large] [--rate-mib 200]
//   MIRROR_NODE_FLAGS='--max-semi-space-size=2' … runs the mirror with those node flags.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Agent } from 'undici'
import { startFakeRegistry } from '../test/helpers/fake-registry/index.js'

const MiB = 1024 * 1024
const IMAGES: Record<string, number[]> = {
  // layer sizes in MiB
  small: [2, 6, 24],
  large: [8, 24, 96],
}
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '8,32' },
    sizes: { type: 'string', default: 'small,large' },
    'rate-mib': { type: 'string', default: '200' },
  },
})

async function startMirror(upstream: string, dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      ...(process.env.MIRROR_NODE_FLAGS ?? '').split(' ').filter(Boolean),
      'dist/cli.js',
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--data',
      dataDir,
      '--upstream',
      `docker.io=${upstream}`,
      '--log-level',
      'info',
      '--max-size',
      '10GiB',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const url = await new Promise<string>((resolve, reject) => {
    let buf = ''
    const onData = (c: Buffer) => {
      buf += c.toString()
      const m = /"port":(\d+)[^\n]*"msg":"regmirror listening"/.exec(buf)
      if (m) {
        child.stdout!.off('data', onData)
        child.stdout!.resume()
        resolve(`http://127.0.0.1:${m[1]}`)
      }
    }
    child.stdout!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`mirror exited with ${code}`)))
  })
  return { child, url }
}

async function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN)
}

async function metricValue(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

async function drain(res: Response): Promise<number> {
  let n = 0
  for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) n += c.length
  return n
}

interface Row {
  image: string
  imageMiB: number
  n: number
  seconds: number
  upstreamRatio: number
  peakRssMiB: number
  idleRssMiB: number
  fills: number
  joined: number
}

async function run(imageName: string, n: number, rate: number): Promise<Row> {
  const fake = await startFakeRegistry()
  const img = fake.addImage('library/bench', 'v1', {
    platforms: [{ os: 'linux', architecture: 'amd64' }],
    layerSizes: IMAGES[imageName]!.map((m) => m * MiB),
  })
  const man = img.manifests[0]!
  const imageBytes = man.body.length + img.blobs.reduce((a, b) => a + b.size, 0)
  fake.fault({ kind: 'slow', bytesPerSecond: rate, match: { server: 'cdn' } })
  const dataDir = await mkdtemp(join(tmpdir(), 'regmirror-bench-'))
  const { child, url } = await startMirror(fake.url, dataDir)
  const idle = await statusKiB(child.pid!, 'VmRSS')
  const dispatcher = new Agent({ connections: null })
  const started = performance.now()
  // Each client pulls the way the Docker daemon does: tag, then config and layers in parallel.
  await Promise.all(
    Array.from({ length: n }, async () => {
      const tag = await fetch(`${url}/v2/bench/manifests/v1`, { headers: { accept: ACCEPT }, dispatcher } as RequestInit)
      await tag.arrayBuffer()
      const sizes = await Promise.all(
        [man.config, ...man.layers].map(async (b) =>
          drain(await fetch(`${url}/v2/bench/blobs/${b.digest}`, { dispatcher } as RequestInit)),
        ),
      )
      const want = [man.config, ...man.layers].map((b) => b.size)
      if (sizes.join() !== want.join()) throw new Error(`short body: ${sizes.join()} vs ${want.join()}`)
    }),
  )
  const seconds = (performance.now() - started) / 1000
  const peak = await statusKiB(child.pid!, 'VmHWM')
  const upstreamBytes = await metricValue(url, 'regmirror_upstream_bytes_total')
  const fills = await metricValue(url, 'regmirror_fills_started_total')
  const joined = await metricValue(url, 'regmirror_fill_readers_joined_total')
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  await dispatcher.close()
  await fake.close()
  await rm(dataDir, { recursive: true, force: true })
  return {
    image: imageName,
    imageMiB: imageBytes / MiB,
    n,
    seconds,
    upstreamRatio: upstreamBytes / imageBytes,
    peakRssMiB: peak / 1024,
    idleRssMiB: idle / 1024,
    fills,
    joined,
  }
}

const rows: Row[] = []
const rate = Number(values['rate-mib']) * MiB
for (const image of values.sizes!.split(',')) {
  for (const n of values.n!.split(',').map(Number)) {
    const r = await run(image, n, rate)
    rows.push(r)
    console.error(
      `${image} N=${n}: ${r.seconds.toFixed(2)} s, upstream ${r.upstreamRatio.toFixed(3)}x, peak RSS ${r.peakRssMiB.toFixed(0)} MiB`,
    )
  }
}
console.log(
  `upstream rate ${values['rate-mib']} MiB/s; node ${process.version}; mirror node flags: ${process.env.MIRROR_NODE_FLAGS || 'none'}\n`,
)
console.log('| image | N | total time | upstream bytes / image | fills | joined | mirror RSS idle | mirror peak RSS |')
console.log('|---|---|---|---|---|---|---|---|')
for (const r of rows) {
  console.log(
    `| ${r.image} (${r.imageMiB.toFixed(0)} MiB) | ${r.n} | ${r.seconds.toFixed(2)} s | ${r.upstreamRatio.toFixed(3)}x | ${r.fills} | ${r.joined} | ${r.idleRssMiB.toFixed(0)} MiB | ${r.peakRssMiB.toFixed(0)} MiB |`,
  )
}
