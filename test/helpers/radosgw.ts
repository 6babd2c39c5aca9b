/**
 * A real S3 server for tests: Ceph's RADOS Gateway from Debian (Ceph 16), as one monitor, one OSD (bluestore on a
 * sparse file, so RAM stays flat) and one radosgw, plain processes on 127.0.0.1 with every byte of state in one temp
 * dir named by CEPH_CONF. Facts behind the settings: /work/shared/notes/ceph-rgw.md (auth "none" needs the msgr2
 * "crc" mode or radosgw hangs on auth error -13; pool size one on a single OSD).
 *
 * `restartGateway()`/`stopGateway()` stop and start radosgw alone (the object store going away mid-run while
 * RADOS keeps its data); `createBucket()` gives each test file its own bucket.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { makeTempDir, removeTempDir } from './temp-dir.js'
import { freePort } from './free-port.js'
import { runProgram, startProgram, waitUntilReady, type ChildProgram } from './child-program.js'
import type { TestContext } from './test-context.js'

/** Programs the helper runs (for requirePrograms). */
export const RADOSGW_PROGRAMS = ['radosgw', 'ceph-mon', 'ceph-osd', 'ceph', 'radosgw-admin', 'monmaptool', 'ceph-authtool']

export interface Radosgw {
  /** `http://127.0.0.1:PORT` of radosgw (path-style S3). */
  endpoint: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  /** Make a bucket with a fresh name (`prefix-<random>`) and return its name. */
  createBucket(prefix?: string): Promise<string>
  /** Stop radosgw only (RADOS keeps the data); the endpoint refuses connections until startGateway(). */
  stopGateway(): Promise<void>
  /** Start radosgw again on the same endpoint and wait until it answers. */
  startGateway(): Promise<void>
  /** Logs of the daemons (radosgw's, the monitor's, the OSD's), for failure messages. */
  output(): string
  stop(): Promise<void>
}

const REGION = 'us-east-1'
const READY_MS = 90_000

function cephConf(dir: string, ports: { mon2: number; mon1: number; rgw: number; bindMin: number }, fsid: string): string {
  const crc = 'crc secure'
  return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${ports.mon2},v1:127.0.0.1:${ports.mon1}]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = ${ports.bindMin}
ms bind port max = ${ports.bindMin + 99}
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = ${crc}
ms mon service mode = ${crc}
ms mon cluster mode = ${crc}
ms client mode = ${crc}
ms service mode = ${crc}
ms cluster mode = ${crc}
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
keyring = ${dir}/keyring
log file = ${dir}/log/$name.log
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
run dir = ${dir}/run
crash dir = ${dir}/crash
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block path = ${dir}/osd/block-$id
bluestore block create = true
bluestore block size = 10737418240
bluestore block db create = false
bluestore block wal create = false
osd memory target = 939524096
mon osd full ratio = 0.97
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:${ports.rgw}
rgw data = ${dir}/rgw
rgw gc obj min wait = 5
rgw gc processor period = 5
rgw dns name = 127.0.0.1
`
}

/** The last 16 KB of each daemon's log file (the daemons log there, not to stdout). */
function logs(dir: string): string {
  try {
    return readdirSync(join(dir, 'log'))
      .map((name) => `--- ${name}\n${readFileSync(join(dir, 'log', name), 'utf8').slice(-16_384)}`)
      .join('\n')
  } catch {
    return '(no logs)'
  }
}

export async function startRadosgw(opts: { t?: TestContext } = {}): Promise<Radosgw> {
  const dir = await makeTempDir('rgw')
  const env = { ...process.env, CEPH_CONF: join(dir, 'ceph.conf') }
  const daemons: ChildProgram[] = []
  let gateway: ChildProgram | undefined
  let closing = false
  const ceph = (args: string[], timeoutMs = 60_000): Promise<{ stdout: string }> =>
    runProgram('ceph', ['--connect-timeout', '30', ...args], { env, timeoutMs })
  const daemon = (name: string, command: string, args: string[]): ChildProgram => {
    const p = startProgram(name, command, ['-f', ...args], { env, cwd: dir })
    daemons.push(p)
    return p
  }
  const cleanup = async (): Promise<void> => {
    closing = true
    await gateway?.stop()
    // OSD before monitor: an OSD whose monitor is gone waits for it instead of exiting promptly.
    for (const p of [...daemons].reverse()) await p.stop()
    await removeTempDir(dir)
  }
  try {
    for (const sub of ['log', 'run', 'crash', 'mon', 'osd/ceph-0', 'rgw']) await mkdir(join(dir, sub), { recursive: true })
    const [mon2, mon1, rgw] = [await freePort(), await freePort(), await freePort()]
    // OSD messengers bind in this range; ceph itself moves on to the next port of the range if one is taken.
    const bindMin = 20_000 + Math.floor(Math.random() * 400) * 100
    const fsid = randomUUID()
    await writeFile(env.CEPH_CONF, cephConf(dir, { mon2, mon1, rgw, bindMin }, fsid))

    // Monitor: keyring (unused with auth none, but mkfs wants one), monmap, mkfs, run.
    const keyring = join(dir, 'keyring')
    await runProgram('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], { env })
    const monmap = join(dir, 'monmap')
    await runProgram('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${mon2},v1:127.0.0.1:${mon1}]`, monmap], {
      env,
    })
    await runProgram('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring], { env })
    const mon = daemon('ceph-mon', 'ceph-mon', ['-i', 'a'])
    await waitUntilReady(mon, async () => (await ceph(['mon', 'stat'], 10_000)).stdout.includes('quorum'), READY_MS)

    // OSD 0: registered with the monitor, then bluestore made on the sparse block file.
    const osdUuid = randomUUID()
    const id = (await ceph(['osd', 'new', osdUuid])).stdout.trim()
    await runProgram('ceph-osd', ['--mkfs', '-i', id, '--osd-uuid', osdUuid], { env, timeoutMs: 120_000 })
    const osd = daemon('ceph-osd', 'ceph-osd', ['-i', id])
    await waitUntilReady(osd, async () => /^osd\.0 up\s+in/m.test((await ceph(['osd', 'dump'], 10_000)).stdout), READY_MS)

    const endpoint = `http://127.0.0.1:${rgw}`
    const startGateway = async (): Promise<void> => {
      // After stop() (a test's teardown may run after the helper's), a new gateway would outlive its deleted dir.
      if (closing) return
      // One gateway at a time: a second start while one runs would leave the first unstopped.
      await gateway?.stop()
      const p = startProgram('radosgw', 'radosgw', ['-f', '-n', 'client.rgw.a'], { env, cwd: dir })
      gateway = p
      await waitUntilReady(
        p,
        async () => {
          const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2000) })
          await res.arrayBuffer()
          return res.status < 500
        },
        READY_MS,
      )
    }
    await startGateway()

    const accessKeyId = `RMTEST${randomBytes(7).toString('hex').toUpperCase()}`
    const secretAccessKey = randomBytes(24).toString('base64url')
    await runProgram(
      'radosgw-admin',
      [
        'user',
        'create',
        '--uid',
        'regmirror-test',
        '--display-name',
        'regmirror test',
        '--access-key',
        accessKeyId,
        '--secret',
        secretAccessKey,
      ],
      { env, timeoutMs: 60_000 },
    )

    let stopped: Promise<void> | undefined
    const stop = (): Promise<void> => (stopped ??= cleanup())
    opts.t?.teardown(stop)
    return {
      endpoint,
      region: REGION,
      accessKeyId,
      secretAccessKey,
      async createBucket(prefix = 'test') {
        const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3')
        const client = new S3Client({ endpoint, region: REGION, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } })
        const name = `${prefix}-${randomBytes(5).toString('hex')}`
        try {
          await client.send(new CreateBucketCommand({ Bucket: name }))
        } finally {
          client.destroy()
        }
        return name
      },
      stopGateway: async () => {
        await gateway?.stop()
      },
      startGateway,
      output: () => logs(dir),
      stop,
    }
  } catch (err) {
    const why = new Error(`radosgw helper: ${(err as Error).message}\n${logs(dir)}`, { cause: err })
    await cleanup()
    throw why
  }
}
