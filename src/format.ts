/** Sizes and durations as people read them, in the tools' output. */

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

/** `1m05s`, `12s`, `0.4s`. */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?'
  if (s < 10) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  const rest = Math.round(s - m * 60)
  return m === 0 ? `${rest}s` : `${m}m${String(rest).padStart(2, '0')}s`
}

/** `1 image`, `3 images`. */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
