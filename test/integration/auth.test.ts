import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import type { Test } from 'tap'
import t from 'tap'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { get, startMirror } from '../helpers/mirror.js'
import { ACCEPT_ALL_MANIFESTS as ACCEPT, errorCode } from '../helpers/oci-http.js'
import { sha256 } from '../helpers/oci-fixtures.js'
import { sleep } from '../helpers/sleep.js'

const ONE = { platforms: [{ os: 'linux', architecture: 'amd64' }], layerSizes: [1000] }
const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` })
const PASSWORDS = { alice: 'alice-s3cret', bob: 'bob-s3cret', ci: 'ci-s3cret' }

async function htpasswd(t: Test, users: Record<string, string>): Promise<string> {
  const file = join(t.testdir({}), 'htpasswd')
  // What `htpasswd -B` writes ($2y$), at a low cost for speed.
  const lines = Object.entries(users).map(([u, p]) => `${u}:${bcrypt.hashSync(p, 4).replace(/^\$2b\$/, '$2y$')}`)
  await writeFile(file, `${lines.join('\n')}\n`)
  return file
}

async function setup(t: Test, auth: Record<string, unknown>, server: Record<string, unknown> = {}) {
  const hub = await startFakeRegistry()
  t.teardown(() => hub.close())
  const team = hub.addImage('team-a/app', '1', ONE)
  const pub = hub.addImage('library/alpine', '3', ONE)
  const file = await htpasswd(t, PASSWORDS)
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: hub.url }], auth: { htpasswd: file, ...auth }, server })
  return { hub, team, pub, file, mirror }
}

t.test('htpasswd: 401 with a Basic challenge without credentials or with wrong ones, 200 with right ones', async (t) => {
  const { mirror, pub } = await setup(t, {})
  const none = await get(`${mirror.url}/v2/`)
  t.equal(none.status, 401)
  t.equal(none.headers.get('www-authenticate'), 'Basic realm="regmirror"', 'the challenge docker login answers')
  t.equal(errorCode(none.body), 'UNAUTHORIZED')
  t.equal((await get(`${mirror.url}/v2/`, basic('alice', 'wrong'))).status, 401, 'a wrong password')
  t.equal((await get(`${mirror.url}/v2/`, basic('mallory', 'x'))).status, 401, 'an unknown user')
  t.equal((await get(`${mirror.url}/v2/`, basic('alice', PASSWORDS.alice))).status, 200, 'docker login: /v2/ with credentials')
  const tag = await get(`${mirror.url}/v2/alpine/manifests/3`, { accept: ACCEPT })
  t.equal(tag.status, 401, 'a pull without credentials')
  const ok = await get(`${mirror.url}/v2/alpine/manifests/3`, { accept: ACCEPT, ...basic('bob', PASSWORDS.bob) })
  t.equal(ok.status, 200)
  t.equal(sha256(ok.body), pub.digest)
  t.equal((await get(`${mirror.url}/healthz`)).status, 200, 'health needs no credentials')
  const metrics = (await get(`${mirror.url}/metrics`)).body.toString()
  const seen = [mirror.logs.join('\n'), metrics, none.body.toString(), tag.body.toString()].join('\n')
  for (const p of Object.values(PASSWORDS)) {
    t.notMatch(seen, p, 'no password in the log, the metrics or an error body')
    t.notMatch(seen, Buffer.from(`alice:${p}`).toString('base64'))
  }
})

t.test('networks allowed without credentials, and access rules for users and networks', async (t) => {
  const { mirror, team, pub } = await setup(t, {
    anonymous: { cidrs: ['127.0.0.0/8'] },
    rules: [
      { repositories: ['docker.io/team-a/**'], users: ['alice', 'ci'] },
      { repositories: ['docker.io/library/*'], users: ['*'], networks: ['127.0.0.0/8'] },
    ],
  })
  t.equal((await get(`${mirror.url}/v2/`)).status, 200, 'an anonymous network gets in')
  const anonPub = await get(`${mirror.url}/v2/alpine/manifests/3`, { accept: ACCEPT })
  t.equal(anonPub.status, 200, 'a rule naming the network lets it pull')
  t.equal(sha256(anonPub.body), pub.digest)
  const anonTeam = await get(`${mirror.url}/v2/team-a/app/manifests/1`, { accept: ACCEPT })
  t.equal(anonTeam.status, 401, 'a rule naming only users asks the anonymous client to log in')
  t.equal(anonTeam.headers.get('www-authenticate'), 'Basic realm="regmirror"')
  const bob = await get(`${mirror.url}/v2/team-a/app/manifests/1`, { accept: ACCEPT, ...basic('bob', PASSWORDS.bob) })
  t.equal(bob.status, 403, 'an authenticated user the rule does not name is denied')
  t.equal(errorCode(bob.body), 'DENIED')
  const blob = await get(`${mirror.url}/v2/team-a/app/blobs/${team.blobs[0]!.digest}`, basic('bob', PASSWORDS.bob))
  t.equal(blob.status, 403, 'blobs of the repository too')
  const alice = await get(`${mirror.url}/v2/team-a/app/manifests/1`, { accept: ACCEPT, ...basic('alice', PASSWORDS.alice) })
  t.equal(alice.status, 200, 'a named user pulls')
  t.equal(sha256(alice.body), team.digest)
  t.equal(
    (await get(`${mirror.url}/v2/team-a/app/manifests/1`, { accept: ACCEPT, ...basic('alice', 'wrong') })).status,
    401,
    'wrong credentials are refused even from an anonymous network',
  )
})

t.test('the htpasswd file is read again when it changes; a broken file keeps the users it had', async (t) => {
  const { mirror, file } = await setup(t, {}, { reloadInterval: '100ms' })
  t.equal((await get(`${mirror.url}/v2/`, basic('dave', 'new-pw'))).status, 401)
  await writeFile(file, `dave:${bcrypt.hashSync('new-pw', 4)}\n`)
  for (let i = 0; i < 300 && !mirror.logs.some((l) => l.includes('htpasswd file reloaded')); i++) await sleep(50)
  t.equal((await get(`${mirror.url}/v2/`, basic('dave', 'new-pw'))).status, 200, 'a user added to the file')
  t.equal((await get(`${mirror.url}/v2/`, basic('alice', PASSWORDS.alice))).status, 401, 'a user removed from it')
  await writeFile(file, 'eve:{SHA}not-bcrypt\n')
  for (let i = 0; i < 300 && !mirror.logs.some((l) => l.includes('htpasswd file not reloaded')); i++) await sleep(50)
  t.ok(
    mirror.logs.some((l) => l.includes('htpasswd file not reloaded') && l.includes('eve')),
    'the refusal names the entry',
  )
  t.equal((await get(`${mirror.url}/v2/`, basic('dave', 'new-pw'))).status, 200, 'the users it had stay')
})
