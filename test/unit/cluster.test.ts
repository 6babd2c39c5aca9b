import { createHash } from 'node:crypto'
import t from 'tap'
import { signPeerRequest, verifyPeerRequest } from '../../src/cluster/peer-auth.js'
import { ownerOf } from '../../src/cluster/rendezvous.js'

const digests = Array.from({ length: 3000 }, (_, i) => `sha256:${createHash('sha256').update(String(i)).digest('hex')}`)
const shares = (members: string[]) => {
  const out = new Map<string, number>()
  for (const d of digests) out.set(ownerOf(d, members)!, (out.get(ownerOf(d, members)!) ?? 0) + 1)
  return out
}

t.test('rendezvous: every replica computes the same owner, shares are even, a change moves only its share', async (t) => {
  const three = ['http://10.0.0.1:5000', 'http://10.0.0.2:5000', 'http://10.0.0.3:5000']
  t.equal(ownerOf(digests[0]!, three), ownerOf(digests[0]!, [...three].reverse()), 'the order of the list does not matter')
  for (const [, n] of shares(three)) t.ok(n > 800 && n < 1200, `about a third each (${n} of 3000)`)
  const four = [...three, 'http://10.0.0.4:5000']
  let moved = 0
  for (const d of digests) {
    const before = ownerOf(d, three)
    const after = ownerOf(d, four)
    if (before !== after) {
      moved++
      t.equal(after, 'http://10.0.0.4:5000', 'a digest that moves, moves to the new replica')
      if (after !== 'http://10.0.0.4:5000') break
    }
  }
  t.ok(moved > 600 && moved < 900, `about a quarter moved to the new replica (${moved})`)
  const two = three.filter((m) => m !== 'http://10.0.0.2:5000')
  for (const d of digests) {
    const before = ownerOf(d, three)
    if (before !== 'http://10.0.0.2:5000' && ownerOf(d, two) !== before) {
      t.fail(`${d} moved although its owner stayed`)
      break
    }
  }
  t.equal(ownerOf(digests[0]!, []), undefined)
})

t.test('peer signatures: bound to the path and the secret, valid for a minute', async (t) => {
  const now = 1_800_000_000_000
  const path = '/_regmirror/peer/v2/library/a/blobs/sha256:' + 'a'.repeat(64) + '?ns=docker.io'
  const sig = signPeerRequest('s3cret-s3cret-s3cret', path, now)
  t.ok(verifyPeerRequest('s3cret-s3cret-s3cret', path, sig, now + 30_000))
  t.notOk(verifyPeerRequest('s3cret-s3cret-s3cret', path, sig, now + 61_000), 'too old')
  t.notOk(verifyPeerRequest('s3cret-s3cret-s3cret', path, sig, now - 61_000), 'from the future')
  t.notOk(verifyPeerRequest('another-secret-here', path, sig, now), 'another secret')
  t.notOk(verifyPeerRequest('s3cret-s3cret-s3cret', path.replace('library/a', 'library/b'), sig, now), 'another path')
  t.notOk(verifyPeerRequest('s3cret-s3cret-s3cret', path, undefined, now))
  t.notOk(verifyPeerRequest('s3cret-s3cret-s3cret', path, 'garbage', now))
  t.notOk(verifyPeerRequest('s3cret-s3cret-s3cret', path, `${Math.floor(now / 1000)}.${'0'.repeat(64)}`, now))
})
