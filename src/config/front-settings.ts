/**
 * The settings of a front server that sends cache hits itself (nginx with X-Accel-Redirect; docs/configuration.md,
 * "nginx in front"): declared here to keep settings.ts within its size, spread into SETTINGS at their place in its
 * order, and otherwise like every other setting there.
 */
import { setting } from './declare.js'
import * as v from './values.js'

export const FRONT_SETTINGS = {
  'server.accelRedirect.prefix': setting(v.uriPrefix, {
    optional: true,
    docDefault: 'none (off)',
    env: 'REGMIRROR_ACCEL_REDIRECT',
    doc:
      'behind nginx: a cache-hit blob GET that carries `server.accelRedirect.header` is answered with its headers, no body and ' +
      '`X-Accel-Redirect: <prefix><ab>/<sha256 hex>` (the file under `<dataDir>/blobs/sha256/`), and nginx sends the file itself from ' +
      'an `internal` location with this prefix ([nginx in front](#nginx-in-front)); misses still stream from regmirror',
  }),
  'server.accelRedirect.header': setting(v.headerName, {
    default: 'X-Regmirror-Accel',
    doc:
      'the request header nginx sets (`proxy_set_header X-Regmirror-Accel 1;`): only a request that carries it, not empty, is ' +
      'answered with `X-Accel-Redirect`, so a client that reaches regmirror directly still gets the body',
  }),
}
