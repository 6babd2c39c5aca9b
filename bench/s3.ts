/**
 * Object storage (issue #17): regmirror with `storage.backend: s3` (stream-through, and redirect) beside regmirror on
 * its filesystem and beside CNCF distribution in proxy mode with its s3 driver, all against the same radosgw (the
 * test helper's: one monitor, one OSD on a sparse file, one gateway, on loopback).
 *
 *   fs            regmirror, blobs on its local disk
 *   s3            regmirror, storage.backend s3: the disk is the hot tier, blobs streamed through it
 *   s3-redirect   the same with storage.s3.redirect: a blob not on the disk is answered with a 307 to a presigned URL
 *   distribution  CNCF distribution 2.8, proxy.remoteurl = the upstream, storage.s3 on the same radosgw
 *
 * Rows per setup: a cold pull (wall, upstream blob bytes as a multiple of the image), a warm pull from the same
 * server, a pull after a restart with an empty local disk (regmirror s3 setups: served from the bucket; distribution
 * keeps nothing local, so this is its warm pull again), and cache-hit throughput (4 connections × 3 GETs of the
 * largest layer). Every pull verifies every body (sha256); redirects are followed like a registry client does.
 *
 *   npm run build && node --import tsx bench/s3.ts [--quick] [--mib 64,64,128] [--rounds 1]
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startProgram, type ChildProgram } from '../test/helpers/child-program.js'
import { startDistribution, type Distribution } from '../test/helpers/distribution.js'
import { freePort } from '../test/helpers/free-port.js'
import { buildOciLayout } from '../test/helpers/oci-image.js'
import { startRadosgw, type Radosgw } from '../test/helpers/radosgw.js'
import { pushLayout } from '../test/helpers/skopeo.js'
import { makeTempDir, removeTempDir } from '../test/helpers/temp-dir.js'
import { CLI } from './servers.js'
import { pullFollowing, throughputFollowing } from './s3-client.js'

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: process.env.BENCH_QUICK === '1' },
    mib: { type: 'string' },
    rounds: { type: 'string', default: '1' },
  },
})
const MiB = 1024 * 1024
const SIZES = (values.mib ?? (values.quick ? '16,16,32' : '64,64,128')).split(',').map((m) => Number(m) * MiB)
const ROUNDS = Number(values.rounds)
const SETUPS = ['fs', 's3', 's3-redirect', 'distribution'] as const
type Setup = (typeof SETUPS)[number]
const log = (msg: string) => console.error(`[s3] ${msg}`)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

interface Server {
  url: string
  /** Stops the server; with `emptyDisk`, starts it again on the same port with its local data removed. */
  restart(emptyDisk: boolean): Promise<void>
  stop(): Promise<void>
  /** What the server printed, for a failed run's message. */
  output?: () => string
}

async function regmirror(setup: Setup, upstream: Distribution, rgw: Radosgw, work: string): Promise<Server> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const dataDir = join(work, `data-${setup}`)
  const bucket = setup === 'fs' ? undefined : await rgw.createBucket(`bench-${setup}`)
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGMIRROR_')))
  if (bucket !== undefined) {
    Object.assign(env, {
      REGMIRROR_STORAGE_BACKEND: 's3',
      REGMIRROR_S3_ENDPOINT: rgw.endpoint,
      REGMIRROR_S3_REGION: rgw.region,
      REGMIRROR_S3_BUCKET: bucket,
      REGMIRROR_S3_PATH_STYLE: 'true',
      REGMIRROR_S3_ACCESS_KEY_ID: rgw.accessKeyId,
      REGMIRROR_S3_SECRET_ACCESS_KEY: rgw.secretAccessKey,
      REGMIRROR_S3_REDIRECT: setup === 's3-redirect' ? 'true' : 'false',
    })
  }
  let program: ChildProgram
  const start = async () => {
    const args = [CLI, 'serve', '--listen', `127.0.0.1:${port}`, '--data', dataDir, '--log-level', 'warn']
    args.push('--upstream', `bench=${upstream.url}`, '--default-upstream', 'bench', '--max-size', '10GiB')
    program = startProgram(`regmirror-${setup}`, process.execPath, args, { env })
    await waitFor(`${url}/readyz`, () => program)
  }
  await start()
  return {
    url,
    restart: async (emptyDisk) => {
      await program.stop()
      if (emptyDisk) await removeTempDir(dataDir)
      await start()
    },
    stop: () => program.stop(),
    output: () => program.output(),
  }
}

async function distributionS3(upstream: Distribution, rgw: Radosgw): Promise<Server> {
  const bucket = await rgw.createBucket('bench-distribution')
  const s3 = { endpoint: rgw.endpoint, region: rgw.region, bucket, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey }
  let d = await startDistribution({ proxy: { remoteurl: upstream.url }, s3 })
  const server: Server = {
    url: d.directUrl,
    // distribution keeps blobs only in the bucket: a restart (on a new port) is all there is to it.
    restart: async () => {
      await d.stop()
      d = await startDistribution({ proxy: { remoteurl: upstream.url }, s3 })
      server.url = d.directUrl
    },
    stop: () => d.stop(),
  }
  return server
}

async function waitFor(url: string, program: () => ChildProgram): Promise<void> {
  const deadline = Date.now() + 90_000
  while (Date.now() < deadline) {
    if (program().exited()) throw new Error(`exited before ready:\n${program().output()}`)
    if (
      await fetch(url).then(
        (r) => r.ok,
        () => false,
      )
    )
      return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${url} not ready:\n${program().output()}`)
}

type Row = 'cold' | 'coldX' | 'warm' | 'empty' | 'hit'

async function main(): Promise<void> {
  const work = await makeTempDir('bench-s3')
  const rgw = await startRadosgw()
  const upstream = await startDistribution({ auth: 'none' })
  const results = new Map<string, number[]>()
  const add = (setup: Setup, row: Row, v: number) => results.set(`${setup}/${row}`, [...(results.get(`${setup}/${row}`) ?? []), v])
  try {
    let blobBytes = 0
    for (let round = 0; round < ROUNDS; round++) {
      // A new image (random layers) per round: the mirrors' disks and buckets outlive a round, and content is
      // addressed by digest, so the same layers again would make every later "cold" pull a hit.
      const image = await buildOciLayout(join(work, `image-${round}`), { tag: 'v1', layerSizes: SIZES })
      blobBytes = image.totalBytes - image.images[0]!.manifestSize
      const largest = image.layerDigests[SIZES.indexOf(Math.max(...SIZES))]!
      log(`round ${round + 1}: image ${(blobBytes / MiB).toFixed(0)} MiB in ${SIZES.length + 1} blobs`)
      for (const setup of SETUPS) {
        const repo = `bench-${round}-${setup}/app`
        await pushLayout(image.layoutDir, 'v1', upstream.hostPort, repo)
        const server = setup === 'distribution' ? await distributionS3(upstream, rgw) : await regmirror(setup, upstream, rgw, work)
        try {
          const before = upstream.requests().length
          add(setup, 'cold', (await pullFollowing(server.url, repo, 'v1')).ms)
          await new Promise((r) => setTimeout(r, 300)) // the counting proxy's records of finished bodies
          const bytes = upstream
            .requests()
            .slice(before)
            .filter((r) => r.method === 'GET' && r.path.includes('/blobs/'))
            .reduce((n, r) => n + r.bytes, 0)
          add(setup, 'coldX', bytes / blobBytes)
          add(setup, 'warm', (await pullFollowing(server.url, repo, 'v1')).ms)
          add(setup, 'hit', (await throughputFollowing(server.url, repo, largest, 4, 3)).mbPerS)
          if (setup !== 'fs') {
            // Give the last upload to the bucket a moment to complete before the disk goes away.
            await new Promise((r) => setTimeout(r, 2000))
            await server.restart(true)
            add(setup, 'empty', (await pullFollowing(server.url, repo, 'v1')).ms)
          }
          log(`round ${round + 1} ${setup}: ${SETUPS.length} rows done`)
        } catch (err) {
          log(`round ${round + 1} ${setup} failed; the server printed:\n${server.output?.().slice(-4000) ?? ''}`)
          throw err
        } finally {
          await server.stop()
        }
      }
    }
    const cell = (setup: Setup, row: Row, f: (x: number) => string) => {
      const xs = results.get(`${setup}/${row}`)
      return xs === undefined ? '–' : f(median(xs))
    }
    const s = (ms: number) => (ms / 1000).toFixed(2)
    const lines = [
      `| workload (image ${(blobBytes / MiB).toFixed(0)} MiB, ${SIZES.length + 1} blobs; median of ${ROUNDS}) | ${SETUPS.join(' | ')} |`,
      `|---|${SETUPS.map(() => '---').join('|')}|`,
      `| cold pull: wall (s) | ${SETUPS.map((x) => cell(x, 'cold', s)).join(' | ')} |`,
      `| cold pull: upstream blob bytes (× image) | ${SETUPS.map((x) => cell(x, 'coldX', (v) => v.toFixed(2))).join(' | ')} |`,
      `| warm pull, same server: wall (s) | ${SETUPS.map((x) => cell(x, 'warm', s)).join(' | ')} |`,
      `| pull after restart with an empty local disk: wall (s) | ${SETUPS.map((x) => cell(x, 'empty', s)).join(' | ')} |`,
      `| cache-hit throughput, 4 × 3 GETs of the largest layer (MB/s) | ${SETUPS.map((x) => cell(x, 'hit', (v) => v.toFixed(0))).join(' | ')} |`,
    ]
    console.log(lines.join('\n'))
  } finally {
    await upstream.stop()
    await rgw.stop()
    await removeTempDir(work)
  }
}

await main()
