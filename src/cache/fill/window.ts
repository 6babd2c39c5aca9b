/**
 * The bytes of an uncached fill that are not on disk, held for the readers still to send them:
 * [start, start + bytes). Readers drain it from the front; the download waits while it is larger
 * than its bound (Fill.waitForRoom), so memory stays bounded by the slowest reader.
 */
export class MemoryWindow {
  private chunks: Buffer[] = []
  /** Offset in the blob of the first byte held. */
  start = 0
  /** Bytes held. */
  bytes = 0

  /** Starts the window at `offset` (where the bytes on disk end). */
  reset(offset: number): void {
    this.chunks = []
    this.start = offset
    this.bytes = 0
  }

  push(buf: Buffer): void {
    // Copied: the source may reuse the chunk's memory.
    this.chunks.push(Buffer.from(buf))
    this.bytes += buf.length
  }

  /** Drops whole chunks every reader is past. */
  trim(minPos: number): void {
    while (this.chunks.length > 0 && this.start + (this.chunks[0] as Buffer).length <= minPos) {
      const first = this.chunks.shift() as Buffer
      this.start += first.length
      this.bytes -= first.length
    }
  }

  /** Copies bytes [pos, pos+len) into `buf`; returns how many were there. */
  read(buf: Buffer, pos: number, len: number): number {
    let at = this.start
    let n = 0
    for (const c of this.chunks) {
      if (n >= len) break
      const cEnd = at + c.length
      if (cEnd > pos + n) {
        const from = pos + n - at
        n += c.copy(buf, n, from, Math.min(c.length, from + (len - n)))
      }
      at = cEnd
    }
    return n
  }

  clear(): void {
    this.chunks = []
    this.bytes = 0
  }
}
