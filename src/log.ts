import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

/**
 * Redaction is a second line of defence: the code never puts upstream credentials or tokens
 * into log fields, and these paths catch any that slip in through headers or errors.
 */
export const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  '*.*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'token',
  '*.token',
  'access_token',
  '*.access_token',
  'password',
  '*.password',
  '*.*.password',
  'credentials',
  '*.credentials',
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
