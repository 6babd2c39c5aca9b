/**
 * The container image (issue #13), built from the top-level Dockerfile by a test-owned Docker daemon and run by it.
 * No base image can be pulled here, so the base is node-base.ts's stand-in for node:24-slim (the Dockerfile's BASE
 * build argument). The running container mirrors a CNCF distribution named in a regmirror.yaml mounted at
 * /etc/regmirror/regmirror.yaml; skopeo and the same daemon (registry-mirrors) pull through it. Then: the blobs
 * are in the container's data volume, PID 1 is node as uid 10001, the HEALTHCHECK turns healthy, and `docker stop`
 * lets a download in flight finish before node exits 0, well before the daemon's SIGKILL.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { request, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { startDistribution } from '../helpers/distribution.js'
import { startDockerd, type Dockerd } from '../helpers/dockerd.js'
import { freePort } from '../helpers/free-port.js'
import { importNodeBase, REPO_ROOT } from '../helpers/node-base.js'
import { AMD64_ARM64, buildOciLayout, type OciLayout } from '../helpers/oci-image.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { requirePrograms } from '../helpers/programs.js'
import { pushLayout, skopeoCopy } from '../helpers/skopeo.js'
import { sleep } from '../helpers/sleep.js'
import { makeTempDir, removeTempDir } from '../helpers/temp-dir.js'
import { blobGets, readPulledOciLayout } from '../helpers/verify.js'

const MiB = 1024 * 1024
const IMAGE = 'regmirror:e2e'
const CONTAINER = 'regmirror-e2e'
/** What `docker stop -t` gives the container before SIGKILL; regmirror is told to drain within less. */
const STOP_GRACE_S = 30
const seconds = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`

/** Every package directory under the image's /app/node_modules, as package-lock.json keys them. */
const LIST_PACKAGES = `
const { readdirSync, existsSync } = require('node:fs')
const out = []
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.')) continue
    const names = name.startsWith('@') ? readdirSync(dir + '/' + name).map((n) => name + '/' + n) : [name]
    for (const n of names) {
      out.push(dir + '/' + n)
      if (existsSync(dir + '/' + n + '/node_modules')) walk(dir + '/' + n + '/node_modules')
    }
  }
}
process.chdir('/app')
walk('node_modules')
console.log(JSON.stringify({ app: readdirSync('/app').sort(), packages: out.sort() }))
`

/** The lockfile's packages that are not devDependencies (nor only theirs): what `npm prune --omit=dev` keeps. */
function productionPackages(): string[] {
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>
  }
  return Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && p.dev !== true)
    .map(([path]) => path)
    .sort()
}

/** `docker inspect` of one field, decoded. */
async function inspect<T>(daemon: Dockerd, format: string, target = CONTAINER): Promise<T> {
  return JSON.parse((await daemon.docker(['inspect', '--format', `{{json ${format}}}`, target])).stdout) as T
}

/** Starts a GET and resolves once the status line and the first bytes are in; the rest waits for resume(). */
function startPausedGet(url: string): Promise<{ res: IncomingMessage; first: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.once('data', (first: Buffer) => {
        res.pause()
        resolve({ res, first })
      })
      res.once('error', reject)
    })
    req.once('error', reject)
    req.end()
  })
}

function readRest(res: IncomingMessage, first: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks = [first]
    res.on('data', (c: Buffer) => chunks.push(c))
    res.once('end', () => resolve(Buffer.concat(chunks)))
    res.once('error', reject)
    res.resume()
  })
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await sleep(250)
  }
}

if (requirePrograms(t, ['dockerd', 'docker', 'docker-registry', 'skopeo', 'debootstrap'])) {
  // A clean clone builds the base with debootstrap, then the image with npm ci: minutes, not tap's default 300 s.
  t.setTimeout(20 * 60_000)
  const testStart = Date.now()
  const work = await makeTempDir('image')
  t.teardown(() => removeTempDir(work))

  const hub = await startDistribution({ auth: 'none', t })
  // 16 MiB: more than loopback's socket buffers hold, so a paused download is still in flight at `docker stop`.
  const app: OciLayout = await buildOciLayout(join(work, 'app'), { tag: 'v1', layerSizes: [16 * MiB, 256 * 1024], platforms: AMD64_ARM64 })
  await pushLayout(app.layoutDir, 'v1', hub.hostPort, 'library/e2eimage')
  const amd64 = app.images.find((i) => i.platform.architecture === 'amd64')!

  // `--network host` (the daemon sets up no bridge): the container listens on a free port of this machine.
  const port = await freePort()
  const mirrorHost = `127.0.0.1:${port}`
  const daemonJson = { 'registry-mirrors': [`http://${mirrorHost}`], 'insecure-registries': [mirrorHost] }
  let daemon: Dockerd
  try {
    daemon = await startDockerd({ t, daemonJson, storageDriver: 'overlay2' })
  } catch (err) {
    // Only slower: vfs copies every layer whole, but works on any filesystem.
    t.comment(`overlay2 unavailable, building on vfs: ${String(err).split('\n')[0]}`)
    daemon = await startDockerd({ t, daemonJson })
  }
  t.teardown(() => daemon.docker(['rm', '--force', '--volumes', CONTAINER]).catch(() => undefined))

  let mark = Date.now()
  const base = await importNodeBase(daemon, t)
  t.comment(`node base ready (${base}) in ${seconds(mark)}`)
  mark = Date.now()
  await daemon.docker(['build', '--network', 'host', '--build-arg', `BASE=${base}`, '--tag', IMAGE, REPO_ROOT], {
    // The daemon (20.10) has no BuildKit of its own without buildx; the classic builder needs nothing else.
    env: { DOCKER_BUILDKIT: '0' },
    timeoutMs: 15 * 60_000,
  })
  t.comment(`docker build in ${seconds(mark)}`)

  const config = join(work, 'regmirror.yaml')
  await writeFile(
    config,
    [
      'wellKnownUpstreams: false',
      'upstreams:',
      '  - name: docker.io',
      `    url: ${hub.url}`,
      'timeouts:',
      `  shutdown: ${STOP_GRACE_S / 2}s`,
      '',
    ].join('\n'),
  )
  const mountConfig = ['--volume', `${config}:/etc/regmirror/regmirror.yaml:ro`]

  t.test('the image: production dependencies only, node 24, and its size', async (t) => {
    const [size, baseSize] = [await inspect<number>(daemon, '.Size', IMAGE), await inspect<number>(daemon, '.Size', base)]
    const own = size - baseSize
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`
    t.comment(`image size ${mb(size)}: the base ${mb(baseSize)}, regmirror's layers ${mb(own)}`)
    // The whole npm ci (typescript, tap, eslint and theirs) would add some 250 MB.
    t.ok(own < 64 * MiB, `regmirror adds ${mb(own)} to its base, under 64 MiB`)

    const listed = await daemon.docker(['run', '--rm', '--network', 'host', '--entrypoint', 'node', IMAGE, '-e', LIST_PACKAGES])
    const { app, packages } = JSON.parse(listed.stdout) as { app: string[]; packages: string[] }
    t.same(app, ['dist', 'node_modules', 'package.json'], '/app holds the build, its dependencies and package.json')
    t.same(packages, productionPackages(), "/app/node_modules: exactly package-lock.json's production packages")
    const devDependencies = Object.keys(
      (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { devDependencies: object }).devDependencies,
    )
    t.same(
      devDependencies.filter((d) => packages.includes(`node_modules/${d}`)),
      [],
      `none of the devDependencies (${devDependencies.join(', ')})`,
    )
    const version = await daemon.docker(['run', '--rm', '--network', 'host', '--entrypoint', 'node', IMAGE, '--version'])
    t.match(version.stdout.trim(), /^v24\./, `node ${version.stdout.trim()}`)
  })

  t.test('/etc/regmirror/regmirror.yaml is read when it is there, and the defaults apply when not', async (t) => {
    const none = await daemon.docker(['run', '--rm', '--network', 'host', IMAGE, 'config', 'check'])
    t.match(none.stdout, /^dataDir: \/var\/lib\/regmirror$/m, 'the data directory is the volume')
    t.match(none.stdout, /url: https:\/\/registry-1\.docker\.io/, 'no file: the built-in upstreams')
    const mounted = await daemon.docker(['run', '--rm', '--network', 'host', ...mountConfig, IMAGE, 'config', 'check'])
    t.match(mounted.stdout, `url: ${hub.url}`, 'a mounted file: its upstream')
    t.notMatch(mounted.stdout, 'registry-1.docker.io', 'and not the built-in one')
  })

  t.test('serves pulls from its data volume as uid 10001, turns healthy, and drains on docker stop', async (t) => {
    mark = Date.now()
    await daemon.docker([
      'run',
      '--detach',
      '--name',
      CONTAINER,
      '--network',
      'host',
      '--health-interval',
      '1s',
      '--env',
      `REGMIRROR_LISTEN=${mirrorHost}`,
      ...mountConfig,
      IMAGE,
    ])
    const logs = async () => {
      const { stdout, stderr } = await daemon.docker(['logs', CONTAINER])
      return stdout + stderr
    }
    try {
      await waitFor(
        'GET /healthz answers',
        () =>
          fetch(`http://${mirrorHost}/healthz`).then(
            (r) => r.ok,
            () => false,
          ),
        60_000,
      )
    } catch (err) {
      t.comment(await logs())
      throw err
    }
    t.comment(`container answering in ${seconds(mark)}`)

    // PID 1 seen from the host: node itself, no shell in between, running as the image's user.
    const pid = await inspect<number>(daemon, '.State.Pid')
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    t.match(status, /^NSpid:\s+\d+\s+1$/m, "the container's PID 1")
    t.same((await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean), ['node', '/app/dist/cli.js', 'serve'], 'is node')
    t.match(status, /^Uid:\s+10001\s+10001\s+10001\s+10001$/m, 'running as uid 10001')
    t.match(status, /^Gid:\s+10001\s+10001\s+10001\s+10001$/m, 'and gid 10001')

    // skopeo: every platform, every digest as pushed.
    const dest = join(work, 'pulled')
    await skopeoCopy(`docker://${mirrorHost}/library/e2eimage:v1`, `oci:${dest}:v1`, { all: true, preserveDigests: true })
    const pulled = await readPulledOciLayout(dest)
    t.equal(pulled.topDigest, app.indexDigest, 'skopeo: the tag resolves to the pushed index')
    t.same(pulled.corrupt, [], 'every blob hashes to its name')
    const all = [app.indexDigest!, ...app.manifestDigests, ...app.blobDigests].sort()
    t.same(pulled.blobDigests, all, 'and they are exactly the pushed ones')
    t.equal(blobGets(hub.requests(), app.blobDigests).length, app.blobDigests.length, 'each blob came from upstream once')

    // The daemon itself, through registry-mirrors: served from the cache skopeo's pull filled.
    const upstreamBefore = blobGets(hub.requests()).length
    await daemon.docker(['pull', '--platform', 'linux/amd64', 'e2eimage:v1'])
    t.equal(await inspect<string>(daemon, '.Id', 'e2eimage:v1'), amd64.configDigest, 'docker pull: the amd64 image, by its config digest')
    t.equal(blobGets(hub.requests()).length, upstreamBefore, 'from the cache: no blob went upstream again')

    // The blobs are in the anonymous volume Docker made for VOLUME /var/lib/regmirror, written as uid 10001.
    const mounts = await inspect<{ Type: string; Source: string; Destination: string }[]>(daemon, '.Mounts')
    const volume = mounts.find((m) => m.Destination === '/var/lib/regmirror')
    t.equal(volume?.Type, 'volume', '/var/lib/regmirror is a volume')
    for (const digest of amd64.layerDigests) {
      const hex = digest.slice('sha256:'.length)
      const file = join(volume!.Source, 'blobs', 'sha256', hex.slice(0, 2), hex)
      t.equal(sha256(await readFile(file)), digest, `layer ${hex.slice(0, 12)} is in the volume`)
      t.equal((await stat(file)).uid, 10001, 'owned by uid 10001')
    }

    // HEALTHCHECK: a probe a second (--health-interval) once the server answers.
    await waitFor(
      'health status "healthy"',
      async () => (await inspect<{ Status: string }>(daemon, '.State.Health')).Status === 'healthy',
      60_000,
    )
    const health = await inspect<{ Status: string; Log: { ExitCode: number }[] }>(daemon, '.State.Health')
    t.equal(health.Status, 'healthy', 'the HEALTHCHECK reports healthy')
    t.ok(
      health.Log.some((l) => l.ExitCode === 0),
      'after a probe that exited 0',
    )

    // docker stop while a client is in the middle of the 16 MiB layer: SIGTERM reaches node as PID 1, the response
    // finishes, node exits 0. Had the signal been ignored (PID 1 without a handler), the SIGKILL after
    // STOP_GRACE_S would leave exit code 137.
    const big = amd64.layerDigests[0]!
    const { res, first } = await startPausedGet(`http://${mirrorHost}/v2/library/e2eimage/blobs/${big}`)
    t.equal(res.statusCode, 200, 'a download is in flight')
    const stopStart = Date.now()
    const stopped = daemon.docker(['stop', '--time', String(STOP_GRACE_S), CONTAINER], { timeoutMs: (STOP_GRACE_S + 30) * 1000 })
    await waitFor('regmirror logs "shutting down"', async () => (await logs()).includes('shutting down'), 20_000)
    const body = await readRest(res, first)
    await stopped
    const stopMs = Date.now() - stopStart
    t.equal(
      createHash('sha256').update(body).digest('hex'),
      big.slice('sha256:'.length),
      'the download begun before SIGTERM completed intact',
    )
    const state = await inspect<{ ExitCode: number; OOMKilled: boolean }>(daemon, '.State')
    t.equal(state.ExitCode, 0, 'node exited 0')
    t.ok(stopMs < STOP_GRACE_S * 1000, `within the grace period (${(stopMs / 1000).toFixed(1)} s of ${STOP_GRACE_S} s)`)
    t.match(await logs(), /"signal":"SIGTERM"/, 'on SIGTERM')
    t.comment(`image test: ${seconds(testStart)} in all`)
  })
}
