import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, readdir, rm, stat } from 'node:fs/promises'
import { basename, join, relative, sep } from 'node:path'

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
  /** Problems not repaired (all of them without `repair`). */
  remaining: number
}

const HEX64 = /^[a-f0-9]{64}$/

/**
 * Checks a data directory offline: re-hashes every blob and manifest under blobs/ (the file
 * name is its digest), and finds what points at nothing (tag links to content that is not
 * there or is corrupt, media-type records without content) and what a crash left behind
 * (temp files). With `repair` every problem found is removed; removing a corrupt manifest
 * also orphans, and so removes, the tags that pointed at it. Meant for a stopped server:
 * a running one's downloads in progress are temp files too.
 */
export async function verifyDataDir(dataDir: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const problems: Problem[] = []
  const report = async (p: Problem, target: string) => {
    if (opts.repair) {
      try {
        await rm(target, { recursive: true, force: true })
        p.repaired = true
      } catch {
        p.repaired = false
      }
    }
    problems.push(p)
    opts.onProblem?.(p)
  }
  const rel = (p: string) => relative(dataDir, p)

  // 1. Content: every file under blobs/sha256/<2 hex>/<64 hex> must hash to its name.
  const blobsDir = join(dataDir, 'blobs', 'sha256')
  const files: { path: string; hex: string; size: number }[] = []
  for (const prefix of await list(blobsDir)) {
    const dir = join(blobsDir, prefix)
    const isDir = await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    )
    if (!/^[a-f0-9]{2}$/.test(prefix) || !isDir) {
      await report({ kind: 'stray-file', path: rel(dir) }, dir)
      continue
    }
    for (const name of await list(dir)) {
      const path = join(dir, name)
      const s = await stat(path).catch(() => undefined)
      if (!s) continue
      if (!HEX64.test(name) || !name.startsWith(prefix) || !s.isFile()) {
        await report({ kind: name.endsWith('.tmp') ? 'temp-file' : 'stray-file', path: rel(path) }, path)
        continue
      }
      files.push({ path, hex: name, size: s.size })
    }
  }
  const progress: VerifyProgress = { done: 0, total: files.length, bytesDone: 0, bytesTotal: files.reduce((n, f) => n + f.size, 0) }
  opts.onProgress?.(progress)
  const good = new Set<string>()
  const corrupt = new Set<string>()
  let next = 0
  const worker = async () => {
    for (;;) {
      const f = files[next++]
      if (!f) return
      const actual = await hashFile(f.path).catch((err: unknown) => `unreadable: ${(err as Error).message}`)
      if (actual === f.hex) good.add(f.hex)
      else {
        corrupt.add(f.hex)
        await report(
          { kind: 'corrupt-blob', path: rel(f.path), detail: actual.startsWith('unreadable') ? actual : `sha256:${actual}` },
          f.path,
        )
      }
      progress.done++
      progress.bytesDone += f.size
      opts.onProgress?.(progress)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker))

  // 2. Tag links: repositories/<upstream>/<repo...>/_tags/<tag>, each a JSON record naming a digest.
  // A link whose manifest has neither content nor a media-type record was evicted (eviction
  // removes both): the tag is still known and its manifest is fetched again by digest. Content
  // gone while its record stayed was lost, and the link is an orphan.
  const typeRecords = new Set((await walk(join(dataDir, 'manifest-types'))).map((p) => basename(p)))
  for (const path of await walk(join(dataDir, 'repositories'))) {
    if (path.endsWith('.tmp')) {
      await report({ kind: 'temp-file', path: rel(path) }, path)
      continue
    }
    if (!path.includes(`${sep}_tags${sep}`)) continue
    let digest: unknown
    try {
      digest = (JSON.parse(await readFile(path, 'utf8')) as { digest?: unknown }).digest
    } catch {
      digest = undefined
    }
    const hex = typeof digest === 'string' && digest.startsWith('sha256:') ? digest.slice(7) : ''
    if (!HEX64.test(hex)) await report({ kind: 'corrupt-tag', path: rel(path) }, path)
    else if (!good.has(hex) && (typeRecords.has(hex) || corrupt.has(hex)))
      await report({ kind: 'orphaned-tag', path: rel(path), detail: `sha256:${hex}` }, path)
  }

  // 3. Manifest media types: manifest-types/<2 hex>/<64 hex> without the content are orphans.
  for (const path of await walk(join(dataDir, 'manifest-types'))) {
    const name = basename(path)
    if (name.endsWith('.tmp')) await report({ kind: 'temp-file', path: rel(path) }, path)
    else if (!HEX64.test(name) || !good.has(name)) await report({ kind: 'orphaned-manifest-type', path: rel(path) }, path)
  }

  // 4. tmp/: downloads a crash interrupted. The server clears it on start-up too.
  for (const name of await list(join(dataDir, 'tmp'))) {
    const path = join(dataDir, 'tmp', name)
    await report({ kind: 'temp-file', path: rel(path) }, path)
  }

  return {
    blobs: files.length,
    bytes: progress.bytesTotal,
    problems,
    remaining: problems.filter((p) => !p.repaired).length,
  }
}

async function list(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[])
}

/** Every file below `dir` (not following links). */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = []
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  for (const e of entries) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await walk(p)))
    else out.push(p)
  }
  return out
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
