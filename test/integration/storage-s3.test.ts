/**
 * The bucket tier (storage.backend: s3) against a real S3 server, Ceph's RADOS Gateway (test/helpers/radosgw.ts),
 * with the fake registry as the upstream: what the bucket holds is only ever verified content, a mirror with an
 * empty disk serves from it without asking the upstream, redirects, and pulls that go on when the bucket is gone.
 */
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { connect, type AddressInfo } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { join } from 'node:path'
import { stringify } from 'yaml'
import t, { type Test } from 'tap'
import { sha256, startFakeRegistry } from '../helpers/fake-registry/index.js'
import { bucketView, storageConfig } from '../helpers/bucket.js'
import { fetchBody, tempDir, until } from '../helpers/crash-tools.js'
import { startMirrorProcess } from '../helpers/mirror-process.js'
import { makeCa, makeServerCert } from '../helpers/certs.js'
import { freePort } from '../helpers/free-port.js'
import bcrypt from 'bcryptjs'
import { resolveConfig } from '../../src/config/load.js'
import { Metrics } from '../../src/metrics.js'
import { createLogger } from '../../src/log.js'
import { Bucket } from '../../src/storage/bucket.js'
import { S3Store } from '../../src/storage/s3-store.js'
import { get, startMirror } from '../helpers/mirror.js'
import { requirePrograms } from '../helpers/programs.js'
import { RADOSGW_PROGRAMS, startRadosgw, type Radosgw } from '../helpers/radosgw.js'

const MiB = 1024 * 1024
// Uploads run beside the responses, on a shared machine: a bound for a stuck test, not a timing.
const WAIT = 60_000

async function setup(t: Test, rgw: Radosgw, s3: Record<string, unknown> = {}, raw: Record<string, unknown> = {}) {
  const fake = await startFakeRegistry()
  t.teardown(() => fake.close())
  // A bucket regmirror creates itself (storage.s3.bucket: created if missing).
  const bucket = `s3core-${randomBytes(5).toString('hex')}`
  const config = { upstreams: [{ name: 'docker.io', url: fake.url }], storage: storageConfig(rgw, bucket, s3), ...raw }
  const mirror = await startMirror(t, config)
  const view = bucketView(rgw, bucket)
  t.teardown(() => view.close())
  return { fake, mirror, view, config, bucket }
}

const metric = async (base: string, re: RegExp): Promise<number> => {
  const m = re.exec((await get(`${base}/metrics`)).body.toString())
  return m ? Number(m[1]) : 0
}

if (requirePrograms(t, RADOSGW_PROGRAMS)) {
  t.test('regmirror on radosgw', async (t) => {
    const rgw = await startRadosgw({ t })

    t.test('an upload completes only after the fill verified the digest', async (t) => {
      const { fake, mirror, view } = await setup(t, rgw, {}, { timeouts: { bodyIdle: '1s' } })
      const bytes = randomBytes(12 * MiB + 5)
      const digest = fake.addBlob(bytes)
      // The upstream stalls once past two parts: the upload has sent parts, the fill has not verified.
      fake.fault({ kind: 'stall', afterBytes: 11 * MiB, match: { server: 'cdn' }, times: 1 })
      const pulled = get(`${mirror.url}/v2/library/big/blobs/${digest}`)
      await until('a multipart upload in progress', async () => (await view.uploads()).includes(view.key(digest)), WAIT)
      t.equal(await view.exists(digest), false, 'no object while the bytes are not verified')
      const res = await pulled
      t.equal(res.status, 200)
      t.equal(sha256(res.body), digest, 'the client got the verified blob (resumed after the stall)')
      await until('the object', () => view.exists(digest), WAIT)
      const stored = await view.object(digest)
      t.equal(sha256(stored!), digest, 'the object holds exactly the verified bytes')
      t.same(await view.uploads(), [], 'no multipart upload left behind')
      t.equal(await metric(mirror.url, /regmirror_storage_uploads_total\{result="stored"\} (\d+)/), 1)
    })

    t.test('a body that does not match its digest leaves no object, and its multipart upload is aborted', async (t) => {
      const { fake, mirror, view } = await setup(t, rgw)
      const bytes = randomBytes(7 * MiB)
      const digest = fake.addBlob(bytes)
      fake.fault({ kind: 'wrongBytes', match: { server: 'cdn' } })
      const res = await fetch(`${mirror.url}/v2/library/bad/blobs/${digest}`)
      await t.rejects(res.arrayBuffer(), 'the client never gets a complete wrong body')
      await until(
        'the upload aborted',
        async () => (await metric(mirror.url, /regmirror_storage_uploads_total\{result="aborted"\} (\d+)/)) === 1,
        WAIT,
      )
      t.same(await view.uploads(), [], 'the multipart upload (one part was sent) was aborted')
      t.equal(await view.exists(digest), false, 'no object under the blob key')
      t.same(await view.digests(), [], 'nothing at all in the bucket')
      t.equal(
        await metric(mirror.url, /regmirror_storage_errors_total\{op="upload"\} (\d+)/),
        0,
        'a bad upstream body is not a storage failure',
      )
    })

    t.test('a replica with an empty disk serves blobs and manifests from the bucket without asking the upstream', async (t) => {
      const { fake, mirror, view, config } = await setup(t, rgw)
      const img = fake.addImage('library/alpine', '3.20', { layerSizes: [64 * 1024, 6 * MiB] })
      const blobs = img.blobs
      const manifest = img.manifests[0]!
      const byDigest = (base: string) => `${base}/v2/library/alpine/manifests/${manifest.digest}`
      const accept = { accept: manifest.mediaType }
      t.equal((await get(byDigest(mirror.url), accept)).status, 200)
      for (const b of blobs) t.equal((await get(`${mirror.url}/v2/library/alpine/blobs/${b.digest}`)).status, 200)
      await until('every blob and the manifest in the bucket', async () => (await view.digests()).length === blobs.length + 1, WAIT)
      await mirror.close()
      fake.reset()
      const fresh = await startMirror(t, config)
      for (const b of blobs) {
        const head = await get(`${fresh.url}/v2/library/alpine/blobs/${b.digest}`, {}, 'HEAD')
        t.equal(Number(head.headers.get('content-length')), b.size, 'HEAD answered from the bucket')
        const res = await get(`${fresh.url}/v2/library/alpine/blobs/${b.digest}`)
        t.equal(res.status, 200)
        t.equal(sha256(res.body), b.digest, 'verified bytes from the bucket')
      }
      const m = await get(byDigest(fresh.url), accept)
      t.equal(m.status, 200)
      t.equal(sha256(m.body), manifest.digest, 'the manifest from the bucket, verified')
      t.equal(m.headers.get('content-type'), manifest.mediaType, 'with its media type')
      t.equal(fake.count({ server: 'registry', path: /\/manifests\// }), 0, 'no manifest request upstream')
      t.equal(fake.count({ server: 'cdn' }), 0, 'no blob downloaded from upstream')
      t.equal(fake.count({ server: 'registry', path: /\/blobs\// }), 0, 'no blob request upstream at all')
      const again = await get(`${fresh.url}/v2/library/alpine/blobs/${blobs[1]!.digest}`)
      t.equal(again.headers.get('x-regmirror-cache'), 'hit', 'the bucket filled the hot tier')
      t.equal(await metric(fresh.url, /regmirror_storage_uploads_total\{result="stored"\} (\d+)/), 0, 'nothing uploaded again')
    })

    t.test('redirect mode: a blob the bucket holds is a 307 to a presigned URL; HEAD and Range as usual', async (t) => {
      const { fake, mirror, view, config } = await setup(t, rgw, { redirect: true, redirectExpiry: '1m' })
      const bytes = randomBytes(MiB + 3)
      const digest = fake.addBlob(bytes)
      const url = (base: string) => `${base}/v2/library/r/blobs/${digest}`
      const first = await get(url(mirror.url))
      t.equal(first.status, 200, 'not in the bucket yet: streamed from upstream as usual')
      await until('the object', () => view.exists(digest), WAIT)
      await mirror.close()
      // Access checks come before the redirect: without credentials, a 401 and no URL.
      const users = join(await tempDir(t), 'htpasswd')
      await writeFile(users, `u:${bcrypt.hashSync('p', 4)}\n`)
      const guarded = await startMirror(t, { ...config, auth: { htpasswd: users } })
      const refused = await fetch(url(guarded.url), { redirect: 'manual' })
      await refused.arrayBuffer()
      t.equal(refused.status, 401, 'no credentials: 401, not a redirect')
      t.equal(refused.headers.get('location'), null)
      const allowed = await fetch(url(guarded.url), {
        redirect: 'manual',
        headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` },
      })
      await allowed.arrayBuffer()
      t.equal(allowed.status, 307, 'with credentials: the redirect')
      await guarded.close()
      const fresh = await startMirror(t, config)
      const res = await fetch(url(fresh.url), { redirect: 'manual' })
      await res.arrayBuffer()
      t.equal(res.status, 307)
      const location = res.headers.get('location')!
      t.match(location, /X-Amz-Signature=/)
      t.notMatch(location, rgw.secretAccessKey, 'the secret is not in the URL')
      t.equal(res.headers.get('docker-content-digest'), digest)
      const followed = await get(location)
      t.equal(sha256(followed.body), digest, 'the presigned URL serves the verified object')
      const ranged = await get(location, { range: 'bytes=10-19' })
      t.equal(ranged.status, 206)
      t.same(ranged.body, bytes.subarray(10, 20), 'Range works on the redirect target')
      const head = await get(url(fresh.url), {}, 'HEAD')
      t.equal(head.status, 200)
      t.equal(Number(head.headers.get('content-length')), bytes.length)
      t.equal(fake.count({ server: 'cdn' }), 1, 'the upstream was asked once, by the first mirror')
    })

    t.test('kill -9 during an upload: no object under the key; after a restart the pull completes', async (t) => {
      const fake = await startFakeRegistry()
      t.teardown(() => fake.close())
      const bucket = `s3core-kill-${randomBytes(4).toString('hex')}`
      const view = bucketView(rgw, bucket)
      t.teardown(() => view.close())
      const data = await tempDir(t)
      const file = join(data, 'regmirror.yaml')
      const raw = { dataDir: join(data, 'data'), upstreams: [{ name: 'docker.io', url: fake.url }], storage: storageConfig(rgw, bucket) }
      await writeFile(file, stringify(raw))
      const bytes = randomBytes(12 * MiB)
      const digest = fake.addBlob(bytes)
      fake.fault({ kind: 'slow', bytesPerSecond: 2 * MiB, match: { server: 'cdn' } })
      const m1 = await startMirrorProcess(['--config', file])
      const inflight = fetchBody(`${m1.url}/v2/library/kill/blobs/${digest}`)
      await until('a multipart upload in progress', async () => (await view.uploads()).includes(view.key(digest)), WAIT)
      process.kill(m1.program.pid, 'SIGKILL')
      await m1.program.exit
      t.ok((await inflight) instanceof Error, 'the interrupted response was broken off')
      t.equal(await view.exists(digest), false, 'no object under the blob key')
      t.same(await view.uploads(), [view.key(digest)], 'the abandoned multipart upload is all that is left')

      fake.clearFaults()
      const m2 = await startMirrorProcess(['--config', file])
      t.teardown(() => m2.program.stop())
      const r = await fetchBody(`${m2.url}/v2/library/kill/blobs/${digest}`)
      if (r instanceof Error) throw r
      t.equal(r.status, 200)
      t.equal(sha256(r.body), digest, 'the pull completes with verified bytes')
      await until('the object', () => view.exists(digest), WAIT)
      t.equal(sha256((await view.object(digest))!), digest, 'and the object holds them')

      // The clean-up of abandoned uploads (at start-up and hourly, for those older than six hours), here with no age.
      const config = resolveConfig({ storage: storageConfig(rgw, bucket) })
      const sweeper = new Bucket(
        new S3Store(config.storage.s3),
        config.storage.s3,
        1000,
        new Metrics({ defaultMetrics: false }),
        createLogger('silent'),
        0,
      )
      t.equal(await sweeper.sweepUploads(), 1, 'the abandoned upload is aborted')
      await sweeper.stop()
      t.same(await view.uploads(), [])
      t.equal(sha256((await view.object(digest))!), digest, 'the completed object is untouched')
    })

    t.test('TLS to the storage: verified against caFile, refused without it, or not verified with insecureSkipVerify', async (t) => {
      // radosgw speaks plain HTTP here; a TLS terminator in front of it is the endpoint the mirror sees.
      const dir = await tempDir(t)
      const ca = await makeCa(dir)
      const pair = await makeServerCert(ca, 'rgw')
      const target = new URL(rgw.endpoint)
      const tls = createTlsServer({ cert: await readFile(pair.cert), key: await readFile(pair.key) }, (socket) => {
        const upstream = connect(Number(target.port), target.hostname)
        socket.pipe(upstream).pipe(socket)
        const end = () => {
          socket.destroy()
          upstream.destroy()
        }
        socket.on('error', end).on('close', end)
        upstream.on('error', end).on('close', end)
      })
      await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r))
      t.teardown(() => new Promise((r) => tls.close(r)))
      const endpoint = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`
      const pull = async (s3: Record<string, unknown>) => {
        const r = await setup(t, rgw, { endpoint, ...s3 })
        const digest = r.fake.addBlob(randomBytes(100_000))
        const res = await get(`${r.mirror.url}/v2/library/tls/blobs/${digest}`)
        t.equal(res.status, 200)
        t.equal(sha256(res.body), digest, 'the pull completes')
        return { ...r, digest }
      }
      const trusted = await pull({ caFile: ca.caCert })
      await until('the object, through TLS', () => trusted.view.exists(trusted.digest), WAIT)
      const untrusted = await pull({})
      t.ok(
        (await metric(untrusted.mirror.url, /regmirror_storage_errors_total\{op="init"\} (\d+)/)) >= 1,
        'an unknown CA is a storage failure',
      )
      t.equal(await untrusted.view.exists(untrusted.digest), false, 'and nothing was uploaded')
      const skipped = await pull({ insecureSkipVerify: true })
      await until('the object, certificate not verified', () => skipped.view.exists(skipped.digest), WAIT)
    })

    t.test('a dead bucket is set aside: not asked again during the cool-down, pulls go to the upstream', async (t) => {
      const fake = await startFakeRegistry()
      t.teardown(() => fake.close())
      // Nothing listens there: every request to the storage fails at connect.
      const dead = `http://127.0.0.1:${await freePort()}`
      const mirror = await startMirror(t, {
        upstreams: [{ name: 'docker.io', url: fake.url }],
        offline: { coolDown: '1h' },
        storage: storageConfig(rgw, 'dead', { endpoint: dead }),
      })
      for (let i = 0; i < 3; i++) {
        const digest = fake.addBlob(randomBytes(50_000))
        const res = await get(`${mirror.url}/v2/library/dead/blobs/${digest}`)
        t.equal(sha256(res.body), digest, 'the pull completes from upstream')
      }
      const text = (await get(`${mirror.url}/metrics`)).body.toString()
      const errors = [...text.matchAll(/^regmirror_storage_errors_total\{op="(\w+)"\} (\d+)/gm)].map((m) => `${m[1]}=${m[2]}`)
      t.same(errors, ['init=1'], 'one failure at start-up, and the storage was not asked again')
      t.notMatch(text, /regmirror_storage_uploads_total\{result="(stored|aborted)"\} [1-9]/, 'no upload was tried')
    })

    t.test('pulls go on when the gateway stops, and the bucket is used again once it is back', async (t) => {
      const { fake, mirror, view } = await setup(t, rgw, {}, { offline: { coolDown: '1s' } })
      const before = randomBytes(MiB)
      const d0 = fake.addBlob(before)
      t.equal((await get(`${mirror.url}/v2/library/x/blobs/${d0}`)).status, 200)
      await until('the first object', () => view.exists(d0), WAIT)
      await rgw.stopGateway()
      let down = true
      // The next tests of this file need it back, even if this one fails half-way.
      t.teardown(() => (down ? rgw.startGateway() : undefined))
      const bytes = randomBytes(6 * MiB)
      const d1 = fake.addBlob(bytes)
      for (let i = 0; i < 3; i++) {
        const res = await get(`${mirror.url}/v2/library/x/blobs/${d1}`)
        t.equal(res.status, 200)
        t.equal(sha256(res.body), d1, 'verified bytes, the bucket down')
      }
      // Counted under the operation that first met the dead gateway (a lookup's head, as a rule; under load it can be
      // another); after that the bucket is set aside for the cool-down and not asked.
      const text = (await get(`${mirror.url}/metrics`)).body.toString()
      const failures = [...text.matchAll(/^regmirror_storage_errors_total\{op="(\w+)"\} (\d+)/gm)]
      t.ok(failures.reduce((n, m) => n + Number(m[2]), 0) >= 1, 'the failure is counted', {
        failures: failures.map((m) => `${m[1]}=${m[2]}`),
      })
      t.notOk(mirror.logs.join('\n').includes(rgw.secretAccessKey), 'no secret in the logs')
      await rgw.startGateway()
      down = false
      await new Promise((r) => setTimeout(r, 1100)) // past the cool-down
      const d2 = fake.addBlob(randomBytes(100_000))
      t.equal((await get(`${mirror.url}/v2/library/x/blobs/${d2}`)).status, 200)
      await until('the object of a blob pulled once the gateway is back', () => view.exists(d2), WAIT)
    })
  })
}
