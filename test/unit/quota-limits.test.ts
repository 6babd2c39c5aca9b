// The pieces of issue #14's quota and link limits on their own: reading ratelimit-remaining, picking a credential,
// and the gate's order and time-out.
import t from 'tap'
import { isRegmirrorError } from '../../src/errors.js'
import { Gate } from '../../src/upstream/limits.js'
import { QuotaBook, credentialsOf, parseRateLimit } from '../../src/upstream/quota.js'

t.test('parseRateLimit reads the count and the window', async (t) => {
  t.same(parseRateLimit('76;w=21600'), { remaining: 76, windowMs: 21_600_000 })
  t.same(parseRateLimit('0'), { remaining: 0, windowMs: undefined })
  t.same(parseRateLimit(' 5 ; w=60 '), { remaining: 5, windowMs: 60_000 })
  t.equal(parseRateLimit(undefined), undefined)
  t.equal(parseRateLimit('many'), undefined)
  t.equal(parseRateLimit('-1;w=1'), undefined)
})

t.test('the credential with the most quota left is picked; unknown counts as full; a passed window forgets', async (t) => {
  let now = 1_000
  const book = new QuotaBook(() => now)
  const [a, b, c] = credentialsOf('https://registry-1.docker.io', [
    { username: 'a', password: 'pa' },
    { username: 'b', password: 'pb' },
    { token: 'tc' },
  ])
  t.same([a!.label, b!.label, c!.label], ['a', 'b', '#3'])
  t.not(a!.key, b!.key)
  t.notMatch(a!.key, /pa/, 'no secret in the key')
  t.equal(book.pick([a!, b!, c!]), a, 'all unknown: the first')
  book.note(a!, 10, 60_000)
  t.equal(book.pick([a!, b!, c!]), b, 'unknown beats a known count')
  book.note(b!, 12, 60_000)
  book.note(c!, 3, 60_000)
  t.equal(book.pick([a!, b!, c!]), b)
  book.note(b!, 10, 60_000)
  t.equal(book.pick([a!, b!, c!]), a, 'ties go to the first listed')
  t.notOk(book.low([a!, b!, c!], 10), 'not below the reserve at 10')
  book.note(a!, 9, 60_000)
  book.note(b!, 9, 60_000)
  t.ok(book.low([a!, b!, c!], 10))
  t.notOk(book.low([a!, b!, c!], 0), 'reserve 0 is never reached')
  now += 60_000
  t.equal(book.remaining(a!), undefined, 'the window passed')
  t.notOk(book.low([a!, b!, c!], 10))
  const [anon] = credentialsOf('https://registry-1.docker.io', undefined)
  t.equal(anon!.label, 'anonymous')
  t.equal(anon!.credentials, undefined)
})

const noEvents = { waited: () => {}, queueLength: () => {} }

t.test('the gate admits in arrival order and times out clearly', async (t) => {
  const gate = new Gate('hub', 1, 0, 100, noEvents)
  const order: number[] = []
  const first = await gate.acquire()
  const waiting = [1, 2, 3].map((i) => gate.acquire().then((release) => (order.push(i), release)))
  first()
  for (const w of waiting) (await w)()
  t.same(order, [1, 2, 3])

  const held = await gate.acquire()
  const err = await gate.acquire().catch((e: unknown) => e)
  t.ok(isRegmirrorError(err, 'UPSTREAM_QUEUE_TIMEOUT'))
  t.equal((err as { retryAfter?: string }).retryAfter, '1')
  held()
  held()
  const again = await gate.acquire()
  again()
  t.pass('a turn given back twice counts once')
})
