import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

/**
 * Redaction is a second line of defence: the code never puts upstream credentials or tokens
 * into log fields, and these paths catch any that slip in through headers or errors.
 */
export const REDACT_PATHS = [
  // Exact paths only: wildcard paths cost a tree walk on every log line, and the code logs
  // no header objects; these catch a credential that slips in under its usual names.
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'token',
  'access_token',
  'password',
  'credentials',
  'upstream.credentials',
  'upstream.proxy',
  'err.token',
]

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'regmirror' },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  )
}
