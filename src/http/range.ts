/**
 * RFC 9110 §14 byte ranges, single range only. A multi-range or malformed header is ignored
 * (the full body is sent, which the RFC allows); a range that cannot be satisfied is a 416.
 * containerd and the Docker daemon resume and parallelise with `bytes=N-`, so a 200 where a
 * 206 was possible makes them start over.
 */
export type RangeResult =
  | { kind: 'none' }
  | { kind: 'range'; start: number; end: number } // inclusive end
  | { kind: 'unsatisfiable' }

const SPEC_RE = /^bytes=(\d*)-(\d*)$/

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' }
  const m = SPEC_RE.exec(header.trim())
  if (!m) return { kind: 'none' }
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return { kind: 'none' }
  // Digits beyond 15 cannot be a real offset and would lose precision as numbers: a huge
  // first byte is past any body, while a huge last byte or suffix just means "to the end"
  // (RFC 9110 §14.1.2), which is what a client asking for bytes=0-<huge> expects.
  if (a.length > 15) return { kind: 'unsatisfiable' }
  if (b.length > 15) {
    if (size === 0) return { kind: 'unsatisfiable' }
    return a === '' ? { kind: 'range', start: 0, end: size - 1 } : parseRange(`bytes=${a}-`, size)
  }
  if (a === '') {
    const suffix = Number(b)
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' }
    return { kind: 'range', start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(a)
  if (b !== '') {
    const last = Number(b)
    if (last < start) return { kind: 'unsatisfiable' }
    if (start >= size) return { kind: 'unsatisfiable' }
    return { kind: 'range', start, end: Math.min(last, size - 1) }
  }
  if (start >= size) return { kind: 'unsatisfiable' }
  return { kind: 'range', start, end: size - 1 }
}
