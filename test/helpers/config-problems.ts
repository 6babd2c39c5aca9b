import { ConfigError } from '../../src/config/load.js'

/** The problems a ConfigError lists, from a call that must throw one. */
export function problemsOf(fn: () => unknown): string[] {
  try {
    fn()
  } catch (e) {
    if (e instanceof ConfigError) return e.problems
    throw e
  }
  throw new Error('expected a ConfigError')
}
