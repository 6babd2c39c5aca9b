/**
 * Upstream traffic counted from the upstream's OWN access log: CNCF distribution prints one line per request on
 * stdout (gorilla's combined log format, written when the response is finished) with the body bytes it wrote:
 *   127.0.0.1 - - [30/Nov/2026:22:50:00 +0000] "GET /v2/r/blobs/sha256:… HTTP/1.1" 200 157286400 "" "ua"
 * The mirrors reach that distribution directly, so no counting proxy sits in the timed path (issue #16).
 */
import { readFile } from 'node:fs/promises'

export interface AccessRecord {
  method: string
  path: string
  status: number
  bytes: number
}

const LINE = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-)/

export function parseAccessLine(line: string): AccessRecord | undefined {
  const m = LINE.exec(line)
  if (!m) return undefined
  return { method: m[1]!, path: m[2]!, status: Number(m[3]), bytes: m[4] === '-' ? 0 : Number(m[4]) }
}

export interface Traffic {
  requests: number
  blobGets: number
  manifestRequests: number
  /** Body bytes the upstream wrote, by its access log. */
  bytes: number
}

export function traffic(records: AccessRecord[]): Traffic {
  return {
    requests: records.length,
    blobGets: records.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length,
    manifestRequests: records.filter((r) => r.path.includes('/manifests/')).length,
    bytes: records.reduce((n, r) => n + r.bytes, 0),
  }
}

/** Collects the access records of one distribution process; `onLine` goes to startDistribution's `onLine`. */
export class AccessLog {
  readonly records: AccessRecord[] = []
  constructor(private readonly pid: () => number) {}

  readonly onLine = (line: string): void => {
    const r = parseAccessLine(line)
    if (r !== undefined) this.records.push(r)
  }

  /** Bytes the process has written to any fd (sockets too): moves while a body is still being sent. */
  private async written(): Promise<number> {
    const io = await readFile(`/proc/${this.pid()}/io`, 'utf8').catch(() => '')
    return Number(/^wchar:\s+(\d+)/m.exec(io)?.[1] ?? 0)
  }

  /**
   * Waits until no request was logged and nothing was written for `quietMs`: a response is logged only when it
   * ends, and distribution keeps filling its storage after its own clients are gone.
   */
  async settle(quietMs = 500, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    let last = ''
    let since = Date.now()
    while (Date.now() < deadline) {
      const now = `${this.records.length} ${await this.written()}`
      if (now !== last) {
        last = now
        since = Date.now()
      } else if (Date.now() - since >= quietMs) return
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}
