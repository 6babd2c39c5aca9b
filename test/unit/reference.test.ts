import t from 'tap'
import { isValidName, isValidTag, parseDigest, parseManifestRef } from '../../src/oci/reference.js'

t.test('repository names follow the distribution-spec grammar', async (t) => {
  for (const ok of ['alpine', 'library/alpine', 'a/b/c', 'my-org/my_app', 'a__b', 'a.b/c-d', 'x'.repeat(255)]) t.ok(isValidName(ok), ok)
  for (const bad of [
    '',
    'Alpine',
    '/a',
    'a/',
    'a//b',
    '..',
    'a/../b',
    './a',
    'a_',
    '-a',
    'a/-b',
    'a%2fb',
    'a b',
    'a\0b',
    'x'.repeat(256),
    'a:b',
  ]) {
    t.notOk(isValidName(bad), JSON.stringify(bad))
  }
})

t.test('tags', async (t) => {
  for (const ok of ['latest', '3.20', 'v1.2.3-rc.1', '_x', 'A'.repeat(128)]) t.ok(isValidTag(ok), ok)
  for (const bad of ['', '.x', '-x', 'a/b', 'A'.repeat(129), '..', 'a:b']) t.notOk(isValidTag(bad), bad)
})

t.test('digests: sha256 only, lower-case hex of the right length', async (t) => {
  const hex = 'a'.repeat(64)
  t.same(parseDigest(`sha256:${hex}`), { algorithm: 'sha256', hex, value: `sha256:${hex}` })
  for (const bad of ['sha256:' + 'A'.repeat(64), 'sha256:abc', 'sha512:' + 'a'.repeat(128), 'md5:x', 'sha256:../../etc', ':', 'sha256:']) {
    t.throws(() => parseDigest(bad), { code: 'DIGEST_INVALID' }, bad)
  }
})

t.test('manifest references are tags or digests', async (t) => {
  t.same(parseManifestRef('latest'), { kind: 'tag', tag: 'latest' })
  t.equal(parseManifestRef(`sha256:${'0'.repeat(64)}`).kind, 'digest')
  t.throws(() => parseManifestRef('-x'), { code: 'TAG_INVALID' })
})
