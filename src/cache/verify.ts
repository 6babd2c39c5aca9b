import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { basename, relative, sep } from 'node:path'
import { Layout, isContentName, type StoredBlob } from './layout.js'

export type ProblemKind = 'corrupt-blob' | 'stray-file' | 'orphaned-tag' | 'corrupt-tag' | 'orphaned-manifest-type' | 'temp-file'

export interface Problem {
  kind: ProblemKind
  /** Path relative to the data directory. */
  path: string
  detail?: string
  repaired?: boolean
}

export interface VerifyProgress {
  done: number
  total: number
  bytesDone: number
  bytesTotal: number
}

export interface VerifyOptions {
  repair?: boolean
  /** Files hashed at once. */
  concurrency?: number
  onProgress?(p: VerifyProgress): void
  onProblem?(p: Problem): void
}

export interface VerifyResult {
  blobs: number
  bytes: number
  problems: Problem[]
  /** Problems not repaired (all of them without `repair`), leftover temp files aside. */
  remaining: number
}

/** What the content check found: the digests (hex) whose files are whole, and those that are not. */
interface ContentState {
  good: Set<string>
  corrupt: Set<string>
}

/**
 * Checks a data directory offline: re-hashes every blob and manifest under blobs/ (the file
 * name is its digest), and finds what points at nothing (tag links to content that is lost or
 * corrupt, media-type records without content) and what a crash left behind (temp files). The
 * layout is layout.ts's. With `repair` every problem found is removed; removing a corrupt
 * manifest also orphans, and so removes, the tags that pointed at it. Meant for a stopped
 * server: a running one's downloads in progress are temp files too.
 */
export async function verifyDataDir(dataDir: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const layout = new Layout(dataDir)
  const problems: Problem[] = []
  const report = async (p: Omit<Problem, 'path'>, target: string) => {
    const problem: Problem = { ...p, path: relative(dataDir, target) }
    if (opts.repair) {
      problem.repaired = await rm(target, { recursive: true, force: true }).then(
        () => true,
        () => false,
      )
    }
    problems.push(problem)
    opts.onProblem?.(problem)
  }
  const scan = layout.scanBlobs()
  for (const stray of scan.strays) await report({ kind: stray.temp ? 'temp-file' : 'stray-file' }, stray.path)
  const state = await checkContent(scan.blobs, opts, report)
  await checkTagLinks(layout, state, report)
  // Media-type records without their content are orphans.
  for (const path of layout.manifestTypeFiles()) {
    const name = basename(path)
    if (name.endsWith('.tmp')) await report({ kind: 'temp-file' }, path)
    else if (!isContentName(name) || !state.good.has(name)) await report({ kind: 'orphaned-manifest-type' }, path)
  }
  // tmp/: downloads a crash interrupted. The server clears it on start-up too.
  for (const path of layout.tmpFiles()) await report({ kind: 'temp-file' }, path)
  return {
    blobs: scan.blobs.length,
    bytes: scan.blobs.reduce((n, b) => n + b.size, 0),
    problems,
    // Temp files are what an interrupted write leaves (a crash, a kill -9): never content, never
    // served, cleared by the next start. Reported, removed by --repair, but not a failed check.
    remaining: problems.filter((p) => !p.repaired && p.kind !== 'temp-file').length,
  }
}

type Report = (p: Omit<Problem, 'path'>, target: string) => Promise<void>

/** Every committed file must hash to its name; a few are hashed at once. */
async function checkContent(blobs: StoredBlob[], opts: VerifyOptions, report: Report): Promise<ContentState> {
  const state: ContentState = { good: new Set(), corrupt: new Set() }
  const progress: VerifyProgress = { done: 0, total: blobs.length, bytesDone: 0, bytesTotal: blobs.reduce((n, b) => n + b.size, 0) }
  opts.onProgress?.(progress)
  let next = 0
  const worker = async () => {
    for (let b = blobs[next++]; b; b = blobs[next++]) {
      const actual = await hashFile(b.path).catch((err: unknown) => `unreadable: ${(err as Error).message}`)
      if (actual === b.hex) state.good.add(b.hex)
      else {
        state.corrupt.add(b.hex)
        await report({ kind: 'corrupt-blob', detail: actual.startsWith('unreadable') ? actual : `sha256:${actual}` }, b.path)
      }
      progress.done++
      progress.bytesDone += b.size
      opts.onProgress?.(progress)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker))
  return state
}

/**
 * Tag links, each a JSON record naming a digest. A link whose manifest has neither content nor
 * a media-type record was evicted (eviction removes both): the tag is still known and its
 * manifest is fetched again by digest. Content lost or corrupt while its record stayed makes the
 * link an orphan.
 */
async function checkTagLinks(layout: Layout, state: ContentState, report: Report): Promise<void> {
  const typeRecords = new Set(layout.manifestTypeFiles().map((p) => basename(p)))
  for (const path of layout.tagLinkFiles()) {
    if (path.endsWith('.tmp')) {
      await report({ kind: 'temp-file' }, path)
      continue
    }
    if (!path.includes(`${sep}_tags${sep}`)) continue
    const hex = await linkedHex(path)
    if (!isContentName(hex)) await report({ kind: 'corrupt-tag' }, path)
    else if (!state.good.has(hex) && (typeRecords.has(hex) || state.corrupt.has(hex))) {
      await report({ kind: 'orphaned-tag', detail: `sha256:${hex}` }, path)
    }
  }
}

/** The hex of the digest a tag link names, or '' when it names none. */
async function linkedHex(path: string): Promise<string> {
  let digest: unknown
  try {
    digest = (JSON.parse(await readFile(path, 'utf8')) as { digest?: unknown }).digest
  } catch {
    return ''
  }
  return typeof digest === 'string' && digest.startsWith('sha256:') ? digest.slice(7) : ''
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    createReadStream(path, { highWaterMark: 1024 * 1024 })
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')))
  })
}
