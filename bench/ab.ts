/**
 * Build against build: N concurrent clients GET the same cold blobs through two (or more) regmirror builds in turn,
 * from one fake upstream (test/helpers/fake-registry/, in memory, no auth), a fresh data dir and fresh blobs per
 * run, builds alternating round by round so a change in the machine's load hits each alike. Prints wall times and
 * VmHWM per build. For telling a change from noise, which one full `npm run bench` cannot.
 *
 *   node --import tsx bench/ab.ts [--clients N] [--layers L] [--mib M] [--rounds R] [--hits H] CLI_A CLI_B ...
 *
 * With --hits H, the same N clients then GET the now cached blobs H times over, timed apart: the cache-hit path.
 *
 * Each CLI is a built `dist/cli.js` (e.g. from `git worktree add /tmp/old <commit>` + `npm run build` there).
 * AB_NODE_ARGS is passed to each regmirror's node, e.g. `AB_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"`.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startFakeRegistry } from '../test/helpers/fake-registry/index.js'

const { values, positionals: builds } = parseArgs({
  allowPositionals: true,
  options: {
    clients: { type: 'string', default: '8' },
    layers: { type: 'string', default: '1' },
    mib: { type: 'string', default: '150' },
    rounds: { type: 'string', default: '3' },
    hits: { type: 'string', default: '0' },
  },
})
const clients = Number(values.clients)
const layers = Number(values.layers)
const size = Number(values.mib) * 1024 * 1024
const rounds = Number(values.rounds)
const hits = Number(values.hits)
if (builds.length === 0) {
  console.error('usage: node --import tsx bench/ab.ts [--clients N] [--layers L] [--mib M] [--rounds R] CLI...')
  process.exit(2)
}

const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })

async function start(cli: string, dataDir: string) {
  const nodeArgs = process.env.AB_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? []
  const args = [
    ...nodeArgs,
    cli,
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--data',
    dataDir,
    '--upstream',
    `ab=${fake.url}`,
    '--default-upstream',
    'ab',
  ]
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve, reject) => {
    let seen = ''
    child.once('exit', (code) => reject(new Error(`${cli} exited with ${code}`)))
    child.stdout.on('data', (c: Buffer) => {
      // Only the start-up lines are kept; the rest is read and dropped.
      if (seen.length > 1 << 16) return
      seen += c.toString()
      const m = /"msg":"regmirror listening"/.test(seen) && /"port":(\d+)/.exec(seen)
      if (m) resolve(`http://127.0.0.1:${m[1]}`)
    })
  })
  return { child, url }
}

function pull(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let n = 0
        res.on('data', (c: Buffer) => (n += c.length))
        res.on('end', () => resolve(n))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

const ms: Record<string, number[]> = {}
const hitMs: Record<string, number[]> = {}
const hwm: Record<string, number[]> = {}
for (let round = 0; round < rounds; round++) {
  for (const cli of builds) {
    const digests = Array.from({ length: layers }, () => fake.addBlob(randomBytes(size)))
    const dataDir = await mkdtemp(join(tmpdir(), 'regmirror-ab-'))
    const { child, url } = await start(cli, dataDir)
    const started = performance.now()
    const got = await Promise.all(Array.from({ length: clients }, () => digests.map((d) => pull(`${url}/v2/ab/blobs/${d}`))).flat())
    ;(ms[cli] ??= []).push(performance.now() - started)
    if (got.some((n) => n !== size)) throw new Error(`${cli}: a response was short`)
    if (hits > 0) {
      const hitStart = performance.now()
      for (let h = 0; h < hits; h++) {
        const again = await Promise.all(Array.from({ length: clients }, () => digests.map((d) => pull(`${url}/v2/ab/blobs/${d}`))).flat())
        if (again.some((n) => n !== size)) throw new Error(`${cli}: a hit was short`)
      }
      ;(hitMs[cli] ??= []).push(performance.now() - hitStart)
    }
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8')
    ;(hwm[cli] ??= []).push(Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) / 1024)
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGTERM')
    await exited
    await rm(dataDir, { recursive: true, force: true })
  }
}
console.log(`${clients} clients × ${layers} cold blob(s) of ${values.mib} MiB, ${rounds} rounds`)
for (const cli of builds) {
  console.log(
    `${cli}\n  wall ms: ${ms[cli]!.map((x) => x.toFixed(0)).join(' ')}\n  VmHWM MiB: ${hwm[cli]!.map((x) => x.toFixed(0)).join(' ')}`,
  )
  if (hits > 0) {
    const mb = (clients * layers * size * hits) / 1e6
    console.log(
      `  hits (${hits} × ${clients * layers} GETs) ms: ${hitMs[cli]!.map((x) => x.toFixed(0)).join(' ')}  MB/s: ${hitMs[cli]!.map((x) => ((mb / x) * 1000).toFixed(0)).join(' ')}`,
    )
  }
}
agent.destroy()
await fake.close()
