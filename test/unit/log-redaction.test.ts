import { Writable } from 'node:stream'
import t from 'tap'
import { createLogger } from '../../src/log.js'

t.test('the logger redacts credentials and tokens wherever they are logged under their usual names', async (t) => {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString())
      cb()
    },
  })
  const log = createLogger('trace', sink)
  const secrets = {
    bearer: 'eyJhbGciOiJSUzI1NiJ9.bearer-token-value',
    basic: Buffer.from('robot:hunter2-password').toString('base64'),
    password: 'hunter2-password',
    token: 'raw-token-value',
    access: 'oauth-access-token',
    cookie: 'session=cookie-secret',
  }
  log.info({ authorization: `Bearer ${secrets.bearer}` }, 'a')
  log.info({ headers: { authorization: `Basic ${secrets.basic}` } }, 'b')
  log.info({ req: { headers: { authorization: `Bearer ${secrets.bearer}`, cookie: secrets.cookie } } }, 'c')
  log.info({ password: secrets.password, token: secrets.token, access_token: secrets.access }, 'd')
  log.info({ credentials: { username: 'robot', password: secrets.password } }, 'e')
  log.info({ upstream: { name: 'x', credentials: { token: secrets.token } } }, 'f')
  log.error({ err: Object.assign(new Error('token request failed'), { token: secrets.token }) }, 'g')
  await new Promise((r) => setImmediate(r))
  const out = lines.join('')
  t.equal(lines.length, 7)
  for (const [name, value] of Object.entries(secrets)) t.notMatch(out, value, `${name} is not in the log`)
  t.equal(out.match(/\[REDACTED\]/g)?.length, 10, 'each secret replaced by [REDACTED]')
  t.match(out, /"username":"robot"|"credentials":"\[REDACTED\]"/, 'the rest of the line is kept')
})
