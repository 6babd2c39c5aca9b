// What a route answers, before faults and sending: one in-memory reply, and the few shapes the fake uses
// (an OCI error body, JSON, plain text, bytes with Range support).

export interface Reply {
  status: number
  headers: Record<string, string>
  /** for HEAD the body is not sent but its length is the Content-Length */
  body: Buffer
}

export function ociError(status: number, code: string, message: string, detail?: unknown, headers: Record<string, string> = {}): Reply {
  const body = Buffer.from(JSON.stringify({ errors: [{ code, message, detail: detail ?? null }] }))
  return { status, headers: { 'content-type': 'application/json', ...headers }, body }
}

export function jsonReply(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: Buffer.from(JSON.stringify(value)) }
}

export function textReply(status: number, text: string, headers: Record<string, string> = {}): Reply {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers }, body: Buffer.from(text) }
}

export function redirectReply(location: string): Reply {
  return { status: 307, headers: { location }, body: Buffer.alloc(0) }
}

/** Parses a single `bytes=` range. undefined: ignore (serve the whole body); 'unsatisfiable': 416. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m) return undefined
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return undefined
  if (a === '') {
    const n = Number(b)
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(a)
  if (start >= size) return 'unsatisfiable'
  let end = b === '' ? size - 1 : Number(b)
  if (end < start) return undefined
  if (end >= size) end = size - 1
  return { start, end }
}

/** A blob's bytes as the registry and the CDN serve them: 200, or 206/416 for a Range request. */
export function serveBytes(bytes: Buffer, range: string | undefined, headers: Record<string, string>): Reply {
  const base = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', ...headers }
  const r = parseRange(range, bytes.length)
  if (r === 'unsatisfiable') {
    return { status: 416, headers: { ...base, 'content-range': `bytes */${bytes.length}` }, body: Buffer.alloc(0) }
  }
  if (r) {
    return {
      status: 206,
      headers: { ...base, 'content-range': `bytes ${r.start}-${r.end}/${bytes.length}` },
      body: bytes.subarray(r.start, r.end + 1),
    }
  }
  return { status: 200, headers: base, body: bytes }
}
