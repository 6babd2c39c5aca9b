import cliProgress from 'cli-progress'
import { count, formatBytes, formatSeconds } from '../format.js'

/** How progress is shown: bars on a terminal, one line per finished blob and image otherwise, or nothing. */
export type ProgressMode = 'bars' | 'plain' | 'none'

export function progressMode(flag: string | undefined, stream: NodeJS.WriteStream): ProgressMode {
  if (flag === undefined || flag === 'auto') return stream.isTTY ? 'bars' : 'plain'
  if (flag === 'bars' || flag === 'plain' || flag === 'none') return flag
  throw new Error(`--progress ${flag}: expected auto, bars, plain or none`)
}

/** What preload, export and import tell whoever watches them. `verb` says what happens to a blob ("fetched", "written", "imported"). */
export interface Progress {
  /** An image is being worked on; its size is not known yet. */
  imageStart(ref: string): void
  /** Its blobs are known: how many, and their bytes. */
  imagePlanned(ref: string, blobs: number, bytes: number): void
  /** Bytes of one of its blobs moved. */
  bytes(ref: string, n: number): void
  /** A blob is done: moved now (`verb`), or already there. */
  blobDone(ref: string, digest: string, size: number, already: boolean): void
  imageDone(ref: string, error?: string): void
  /** A line above the bars (warnings). */
  note(text: string): void
  stop(): void
}

interface ImageState {
  bytesDone: number
  bytesTotal: number
  blobsDone: number
  blobsTotal: number
  started: number
  bar?: cliProgress.SingleBar
}

/**
 * The one implementation of Progress: bars (cli-progress, one per image in flight and a total with
 * rate and ETA) or plain lines, both from the same counts.
 */
export class ProgressView implements Progress {
  private readonly images = new Map<string, ImageState>()
  private readonly multi?: cliProgress.MultiBar
  private readonly total?: cliProgress.SingleBar
  private readonly started = Date.now()
  private bytesDone = 0
  private bytesTotal = 0
  private blobsDone = 0
  private blobsTotal = 0
  private stopped = false

  constructor(
    private readonly mode: ProgressMode,
    /** What happens to a blob: "fetched", "written", "imported". */
    private readonly verb: string,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    if (mode !== 'bars') return
    this.multi = new cliProgress.MultiBar({
      stream: out,
      format: (options, params, payload: { label: string; line: () => string }) =>
        `${payload.label} ${cliProgress.Format.BarFormat(params.progress, options)} ${payload.line()}`,
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      fps: 8,
      // Redraw on a timer even when the stream is not a TTY (the tests drive it through a pseudo-terminal).
      noTTYOutput: true,
      notTTYSchedule: 500,
      autopadding: true,
    })
    this.total = this.multi.create(1, 0, { label: label('total'), line: () => this.totalLine() })
  }

  imageStart(ref: string): void {
    const s: ImageState = { bytesDone: 0, bytesTotal: 0, blobsDone: 0, blobsTotal: 0, started: Date.now() }
    this.images.set(ref, s)
    if (this.multi) s.bar = this.multi.create(1, 0, { label: label(ref), line: () => this.imageLine(s) })
  }

  imagePlanned(ref: string, blobs: number, bytes: number): void {
    const s = this.images.get(ref)
    if (!s) return
    s.blobsTotal += blobs
    s.bytesTotal += bytes
    this.blobsTotal += blobs
    this.bytesTotal += bytes
    s.bar?.setTotal(Math.max(1, s.bytesTotal))
    this.total?.setTotal(Math.max(1, this.bytesTotal))
  }

  bytes(ref: string, n: number): void {
    const s = this.images.get(ref)
    if (s) {
      s.bytesDone += n
      s.bar?.update(Math.min(s.bytesDone, s.bytesTotal))
    }
    this.bytesDone += n
    this.total?.update(Math.min(this.bytesDone, this.bytesTotal))
  }

  blobDone(ref: string, digest: string, size: number, already: boolean): void {
    const s = this.images.get(ref)
    if (s) s.blobsDone++
    this.blobsDone++
    // An already cached blob moves no bytes, but it is done: the bars count it as progress.
    if (already) this.bytes(ref, size)
    if (this.mode === 'plain') this.line(`blob ${digest} ${formatBytes(size)} ${already ? 'already there' : this.verb} (${ref})`)
  }

  imageDone(ref: string, error?: string): void {
    const s = this.images.get(ref)
    this.images.delete(ref)
    if (s?.bar) this.multi?.remove(s.bar)
    if (error !== undefined) this.line(`image ${ref} FAILED: ${error}`)
    else if (this.mode !== 'none' && s) {
      this.line(
        `image ${ref} done: ${count(s.blobsDone, 'blob')}, ${formatBytes(Math.max(s.bytesTotal, s.bytesDone))} in ${formatSeconds((Date.now() - s.started) / 1000)}`,
      )
    }
  }

  note(text: string): void {
    if (this.mode !== 'none') this.line(text)
  }

  stop(): void {
    if (!this.multi || this.stopped) return
    this.stopped = true
    this.total?.update(Math.min(this.bytesDone, this.bytesTotal))
    // Lines logged since the last frame are written with the next one: draw it before stopping.
    this.multi.update()
    this.multi.stop()
  }

  private line(text: string): void {
    if (this.mode === 'none') return
    if (this.multi) this.multi.log(`${text}\n`)
    else this.out.write(`${text}\n`)
  }

  private imageLine(s: ImageState): string {
    const secs = (Date.now() - s.started) / 1000
    return `${formatBytes(s.bytesDone)}/${formatBytes(s.bytesTotal)} ${rate(s.bytesDone, secs)} blobs ${s.blobsDone}/${s.blobsTotal}`
  }

  private totalLine(): string {
    const secs = (Date.now() - this.started) / 1000
    const speed = this.bytesDone / Math.max(secs, 0.001)
    const eta = speed > 0 ? formatSeconds((this.bytesTotal - this.bytesDone) / speed) : '?'
    return `${formatBytes(this.bytesDone)}/${formatBytes(this.bytesTotal)} ${rate(this.bytesDone, secs)} ETA ${eta} blobs ${this.blobsDone}/${this.blobsTotal}`
  }
}

function rate(bytes: number, secs: number): string {
  return `${formatBytes(bytes / Math.max(secs, 0.001))}/s`
}

/** Bar labels of one width, long references shortened in the middle. */
function label(text: string): string {
  const w = 36
  return text.length <= w ? text.padEnd(w) : `${text.slice(0, 16)}…${text.slice(-(w - 17))}`
}
