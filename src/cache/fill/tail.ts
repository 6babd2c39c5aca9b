/** Bytes per slab: one temp-file write each, and the largest view a reader is handed. */
export const SLAB = 1024 * 1024

/**
 * The newest bytes of a fill (disk mode), in memory: the slab being filled, which is not on disk
 * yet, and the last few written ones. Network reads (tens of KiB each) are gathered into slabs so
 * the temp file gets one write per MiB instead of one per read, and readers that keep up with the
 * download are handed views of the slabs instead of reading back what was just written: no read,
 * no copy, no buffer to collect. That read-back and its buffers were half the mirror's CPU on a
 * cold blob. A slab is only ever appended to and never reused, so a view stays valid for as long
 * as a socket holds it. Every slab is full except the last.
 */
export class Tail {
  private slabs: Buffer[] = []
  /** Blob offset of the first byte held. */
  start = 0
  /** Bytes used in the last slab. */
  private used = 0

  constructor(private readonly slabSize = SLAB) {}

  /** Blob offset just past the last byte held. */
  get end(): number {
    return this.slabs.length === 0 ? this.start : this.start + (this.slabs.length - 1) * this.slabSize + this.used
  }

  /** Copies `buf` in after the last byte held. */
  append(buf: Buffer): void {
    let off = 0
    while (off < buf.length) {
      if (this.slabs.length === 0 || this.used === this.slabSize) {
        this.slabs.push(Buffer.allocUnsafeSlow(this.slabSize))
        this.used = 0
      }
      const n = buf.copy(this.slabs[this.slabs.length - 1] as Buffer, this.used, off)
      this.used += n
      off += n
    }
  }

  /** Bytes from `pos`, at most `len` and never past the slab `pos` is in; undefined when `pos` is not held. */
  view(pos: number, len: number): Buffer | undefined {
    const end = this.end
    if (pos < this.start || pos >= end) return undefined
    const i = Math.floor((pos - this.start) / this.slabSize)
    const from = pos - this.start - i * this.slabSize
    const slab = this.slabs[i] as Buffer
    const upTo = Math.min(from + len, i === this.slabs.length - 1 ? this.used : this.slabSize)
    return slab.subarray(from, upTo)
  }

  /** Drops whole slabs that end at or before `pos`. */
  trim(pos: number): void {
    while (this.slabs.length > 1 && this.start + this.slabSize <= pos) {
      this.slabs.shift()
      this.start += this.slabSize
    }
  }

  /** Drops everything; the tail goes on at `pos`. */
  reset(pos: number): void {
    this.slabs = []
    this.used = 0
    this.start = pos
  }
}
