import { randomBytes } from 'node:crypto'
import t from 'tap'
import { resolveConfig } from '../../src/config/load.js'
import { createLogger } from '../../src/log.js'
import { Metrics } from '../../src/metrics.js'
import { UpstreamClient } from '../../src/upstream/client.js'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { sleep } from '../helpers/sleep.js'

// Regression: the byte-counting 'data' listener switched upstream bodies into flowing mode, so
// bytes that arrived before the caller started reading (a fill awaiting eviction) were lost and
// the fill failed with "upstream sent fewer bytes than it announced".
t.test('an upstream body read late is complete, and its bytes are counted', async (t) => {
  const fake = await startFakeRegistry({ auth: 'none', redirectBlobs: false })
  t.teardown(() => fake.close())
  const bytes = randomBytes(2 * 1024 * 1024)
  const digest = fake.addBlob(bytes)
  const config = resolveConfig({
    wellKnownUpstreams: false,
    upstreams: [{ name: 'up', url: fake.url }],
    defaultUpstream: 'up',
    dataDir: '/tmp',
  })
  const metrics = new Metrics({ defaultMetrics: false })
  const client = new UpstreamClient(config, createLogger('silent'), metrics)
  t.teardown(() => client.close())
  const res = await client.request(config.upstreams[0]!, { method: 'GET', path: `/v2/x/blobs/${digest}`, repo: 'x' })
  t.equal(res.status, 200)
  await sleep(200)
  const chunks: Buffer[] = []
  for await (const c of res.body) chunks.push(c as Buffer)
  t.same(Buffer.concat(chunks), bytes, 'every byte is still there')
  t.equal((await metrics.upstreamBytes.get()).values[0]?.value, bytes.length, 'upstream bytes counted')
})
