/**
 * Human-friendly durations and sizes used throughout the configuration.
 *
 * Durations: `250ms`, `30s`, `5m`, `1h`, `1h30m`, `2d`, `1.5h`; a bare number (or numeric string) means seconds.
 * Sizes: `1024` (bytes), `500KB`, `500MiB`, `50GiB`, `10GB`, `1.5TiB`; decimal units (kB/KB, MB, GB, TB) are
 * powers of 1000, binary units (KiB, MiB, GiB, TiB) powers of 1024. Units are case-insensitive except that
 * `b` alone means bytes.
 */

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1000,
  kb: 1000,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  t: 1000 ** 4,
  tb: 1000 ** 4,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/** Parses a duration into milliseconds. Throws `Error('not a duration: "…"')` on bad input. */
export function parseDuration(s: string | number): number {
  const bad = (): Error => new Error(`not a duration: ${JSON.stringify(s)}`)
  if (typeof s === 'number') {
    if (!Number.isFinite(s) || s < 0) throw bad()
    return Math.round(s * 1000)
  }
  if (typeof s !== 'string') throw bad()
  const str = s.trim()
  if (str === '') throw bad()
  if (/^\d+(\.\d+)?$/.test(str)) return Math.round(Number(str) * 1000)
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy
  let total = 0
  let pos = 0
  const seen = new Set<string>()
  while (pos < str.length) {
    re.lastIndex = pos
    const m = re.exec(str)
    if (!m) throw bad()
    const unit = m[2]!
    if (seen.has(unit)) throw bad()
    seen.add(unit)
    total += Number(m[1]) * DURATION_UNITS[unit]!
    pos = re.lastIndex
  }
  return Math.round(total)
}

/** Parses a size into bytes. Throws `Error('not a size: "…"')` on bad input. */
export function parseSize(s: string | number): number {
  const bad = (): Error => new Error(`not a size: ${JSON.stringify(s)}`)
  if (typeof s === 'number') {
    if (!Number.isFinite(s) || s < 0 || !Number.isInteger(s)) throw bad()
    return s
  }
  if (typeof s !== 'string') throw bad()
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(s.trim())
  if (!m) throw bad()
  const unit = m[2]!.toLowerCase()
  const mult = unit === '' ? 1 : SIZE_UNITS[unit]
  if (mult === undefined) throw bad()
  const n = Number(m[1]) * mult
  if (!Number.isSafeInteger(Math.floor(n))) throw bad()
  return Math.floor(n)
}

/** Formats milliseconds as the shortest duration string that parses back to the same value (`1h30m`, `250ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s'
  let rest = Math.round(ms)
  let out = ''
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
    ['ms', 1],
  ] as const) {
    if (rest >= size) {
      const n = Math.floor(rest / size)
      out += `${n}${unit}`
      rest -= n * size
    }
  }
  return out
}

/** Formats bytes with the largest binary unit that divides it exactly (`50GiB`), else plain bytes. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`
  }
  return String(bytes)
}
