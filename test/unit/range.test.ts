import t from 'tap'
import { parseRange } from '../../src/http/range.js'

t.test('satisfiable single ranges', async (t) => {
  t.same(parseRange('bytes=500-1499', 4000), { kind: 'range', start: 500, end: 1499 })
  t.same(parseRange('bytes=500-', 4000), { kind: 'range', start: 500, end: 3999 })
  t.same(parseRange('bytes=-500', 4000), { kind: 'range', start: 3500, end: 3999 })
  t.same(parseRange('bytes=-9000', 4000), { kind: 'range', start: 0, end: 3999 }, 'a suffix longer than the body is the whole body')
  t.same(parseRange('bytes=3000-9999', 4000), { kind: 'range', start: 3000, end: 3999 }, 'an end past the size is clamped')
  t.same(parseRange('bytes=0-0', 1), { kind: 'range', start: 0, end: 0 })
  t.same(parseRange('bytes=0-99999999999999999999', 4000), { kind: 'range', start: 0, end: 3999 }, 'a huge last byte means to the end')
  t.same(parseRange('bytes=100-99999999999999999999', 4000), { kind: 'range', start: 100, end: 3999 })
  t.same(parseRange('bytes=-99999999999999999999', 4000), { kind: 'range', start: 0, end: 3999 }, 'a huge suffix is the whole body')
})

t.test('unsatisfiable ranges are 416', async (t) => {
  t.same(parseRange('bytes=500-0', 4000), { kind: 'unsatisfiable' })
  t.same(parseRange('bytes=4000-', 4000), { kind: 'unsatisfiable' })
  t.same(parseRange('bytes=-0', 4000), { kind: 'unsatisfiable' })
  t.same(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' })
  t.same(parseRange('bytes=99999999999999999999-', 10), { kind: 'unsatisfiable' })
  t.same(parseRange('bytes=99999999999999999999-99999999999999999999', 10), { kind: 'unsatisfiable' })
  t.same(parseRange('bytes=5000-99999999999999999999', 4000), { kind: 'unsatisfiable' })
})

t.test('malformed and multi-range headers are ignored (full body)', async (t) => {
  for (const h of [undefined, '', 'bytes=', 'bytes=-', 'items=0-1', 'bytes=0-1,5-6', 'bytes=a-b', 'bytes = 0-1', 'bytes=1-2-3']) {
    t.same(parseRange(h, 4000), { kind: 'none' }, String(h))
  }
})
