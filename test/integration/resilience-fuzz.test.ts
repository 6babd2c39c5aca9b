import { mkdtemp, readdir, realpath, rm } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { prng } from '../helpers/prng.js'

const SEED = Number(process.env.FUZZ_SEED ?? 20240611)
const COUNT = Number(process.env.FUZZ_COUNT ?? 2000)

t.test(`fuzz: ${COUNT} generated requests (seed ${SEED}): no 500, no crash, nothing outside the data dir`, async (t) => {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  const img = fake.addImage('library/fz', 'v1', { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [3000] })
  const root = await mkdtemp(join(tmpdir(), 'regmirror-fuzz-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const dataDir = join(root, 'data')
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }], retries: { attempts: 1 } }, { dataDir })

  const r = prng(SEED)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T
  const int = (n: number) => Math.floor(r() * n)
  const digests = [img.digest, ...img.blobs.map((b) => b.digest)]
  const nameParts = [
    'fz',
    'library',
    'a',
    'library/fz',
    '..',
    '.',
    '%2e%2e',
    '%2F',
    '%00',
    '%2f..%2f',
    'A',
    'a-b',
    'a__b',
    'a..b',
    '-a',
    'x'.repeat(300),
    'docker.io',
    'ghcr.io',
    'nothere.example',
    'localhost',
    '~',
    '%',
    '%zz',
    '\\',
    'etc',
    'passwd',
    '_tags',
    'ü',
    '%c3%bc',
    '%ff',
  ]
  const refs = [
    'v1',
    'latest',
    '..',
    '.',
    '-x',
    't'.repeat(129),
    'sha256:',
    'sha256:abc',
    'md5:0',
    ...digests,
    `sha256:${'0'.repeat(64)}`,
    `sha256:${'0'.repeat(63)}/..`,
    '%2e%2e',
    '%00',
    'v1%2f..',
  ]
  const kinds = ['manifests', 'blobs', 'tags/list', 'tags', 'uploads', '']
  const ranges = [
    undefined,
    'bytes=0-',
    'bytes=-1',
    'bytes=0-0',
    'bytes=1-0',
    'bytes=abc',
    'bytes=0-1,2-3',
    'bytes=99999999999999999999-',
    'bytes=-99999999999999999999',
    '=',
    'bytes=',
    `bytes=${int(5000)}-${int(5000)}`,
    `bytes=-${int(5000)}`,
    'bytes=2999-',
    'bytes=3000-',
  ]
  const accepts = [
    undefined,
    '*/*',
    '',
    'application/vnd.oci.image.index.v1+json',
    'text/html',
    ';;;,,,',
    'a/b;q=x',
    'application/vnd.docker.distribution.manifest.v2+json;q=0.5, */*;q=0.1',
  ]
  const methods = ['GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'HEAD', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE']

  function genPath(): string {
    const roll = r()
    if (roll < 0.05) return pick(['/', '/v2', '/v2/', '/healthz', '/metrics', '/v2/_catalog', '//v2/', '/v3/x', '*'])
    const name = Array.from({ length: 1 + int(4) }, () => pick(nameParts)).join(pick(['/', '/', '/', '//', '/./', '/../']))
    let p = `/v2/${name}/${pick(kinds)}`
    if (r() < 0.85) p += `/${pick(refs)}`
    if (r() < 0.2) p += pick(['?ns=docker.io', '?ns=nope', '?n=2', '?n=-1&last=..', '?ns=', '?ns=..%2f..', '#frag', '?%00'])
    if (r() < 0.05) p = p.replace(/\//g, '%2F')
    return p
  }

  const agent = new Agent({ keepAlive: true, maxSockets: 16 })
  t.teardown(() => agent.destroy())
  const u = new URL(mirror.url)
  const statuses = new Map<number, number>()
  const bad: string[] = []
  const send = (method: string, path: string, headers: Record<string, string>) =>
    new Promise<void>((resolve) => {
      let req
      try {
        req = request({ host: u.hostname, port: u.port, path, method, headers, agent }, (res) => {
          res.resume()
          res.on('end', () => {
            const s = res.statusCode ?? 0
            statuses.set(s, (statuses.get(s) ?? 0) + 1)
            if (s >= 500 && s !== 502 && s !== 503) bad.push(`${s} ${method} ${path} ${JSON.stringify(headers)}`)
            resolve()
          })
          res.on('error', () => resolve())
        })
      } catch {
        // node's client refuses some paths and header values outright: nothing was sent.
        resolve()
        return
      }
      req.on('error', () => resolve())
      req.end()
    })

  for (let i = 0; i < COUNT; i += 25) {
    const batch: Promise<void>[] = []
    for (let j = 0; j < 25 && i + j < COUNT; j++) {
      const headers: Record<string, string> = {}
      const range = pick(ranges)
      if (range !== undefined) headers.range = range
      const accept = pick(accepts)
      if (accept !== undefined) headers.accept = accept
      if (r() < 0.1) headers.host = pick(['docker.io', 'ghcr.io', '..', 'evil.example:99', ''])
      if (r() < 0.05) headers['if-none-match'] = `"${pick(digests)}"`
      batch.push(send(pick(methods), genPath(), headers))
    }
    await Promise.all(batch)
  }
  t.same(bad, [], 'no 5xx other than upstream gateway errors')
  t.comment(`statuses: ${JSON.stringify([...statuses].sort())}`)
  t.ok(
    (statuses.get(200) ?? 0) > 0 && (statuses.get(400) ?? 0) > 0 && (statuses.get(404) ?? 0) > 0,
    `a mix of answers: ${JSON.stringify([...statuses])}`,
  )
  t.equal((await get(`${mirror.url}/healthz`)).status, 200, 'still serving')

  t.same(await readdir(root), ['data'], 'nothing created beside the data dir')
  const real = await realpath(dataDir)
  const walk = async (dir: string): Promise<string[]> => {
    const out: string[] = []
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      out.push(p)
      if (e.isDirectory()) out.push(...(await walk(p)))
    }
    return out
  }
  const all = await walk(dataDir)
  const escaped = []
  for (const p of all) if (!(await realpath(p)).startsWith(real + '/')) escaped.push(p)
  t.same(escaped, [], 'every path under the data dir resolves inside it')
  const top = new Set(all.map((p) => p.slice(dataDir.length + 1).split('/')[0]))
  t.same(
    [...top].filter((x) => !['blobs', 'tmp', 'repositories', 'manifest-types'].includes(x as string)),
    [],
    'only the known top-level directories',
  )
  t.notOk(
    all.some((p) => /(^|\/)\.\.?(\/|$)|%|\0/.test(p.slice(dataDir.length))),
    'no dot, percent or NUL components',
  )
})
