/** The `auto` cache size: what fits on the filesystem of the data directory. */
import { existsSync, statfsSync } from 'node:fs'
import { dirname, resolve as resolvePath } from 'node:path'

const GiB = 1024 ** 3

/** Cap of the `auto` cache size. */
export const AUTO_MAX_SIZE_CAP = 50 * GiB

/** Fraction of the filesystem's total size used by `auto`. */
const AUTO_MAX_SIZE_FRACTION = 0.8

/**
 * `auto` cache size: min(50GiB, 80% of the filesystem's total size). Pure, for testing;
 * see filesystemSize() for the measurement.
 */
export function autoMaxSize(filesystemTotalBytes: number): number {
  return Math.min(AUTO_MAX_SIZE_CAP, Math.floor(filesystemTotalBytes * AUTO_MAX_SIZE_FRACTION))
}

/** Total size in bytes of the filesystem holding `dir` (or its nearest existing ancestor); undefined if unknown. */
export function filesystemSize(dir: string): number | undefined {
  let d = resolvePath(dir)
  while (!existsSync(d)) {
    const up = dirname(d)
    if (up === d) break
    d = up
  }
  try {
    const s = statfsSync(d)
    return Number(s.blocks) * Number(s.bsize)
  } catch {
    return undefined
  }
}

/** The `auto` size for a data directory; the cap when its filesystem cannot be measured. */
export function autoMaxSizeFor(dataDir: string): number {
  const total = filesystemSize(dataDir)
  return total === undefined ? AUTO_MAX_SIZE_CAP : autoMaxSize(total)
}
