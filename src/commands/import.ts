import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { discardStaged, readArchive, readLayoutDir, type ArchiveContents, type ReadHooks } from '../airgap/archive-read.js'
import { importDockerSave } from '../airgap/import-docker.js'
import { importOciImages, type ImportedImage } from '../airgap/import.js'
import { ProgressView, progressMode, type Progress } from '../airgap/progress.js'
import { openParts, type OpenParts } from '../app.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import { count, formatBytes, formatSeconds } from '../format.js'
import { updatePinFile } from '../proxy/pins.js'
import { markChanged, stringOpt, toolLogger, UsageError, type Command } from './shared.js'

const OPTIONS = {
  pin: { type: 'boolean' },
  progress: { type: 'string' },
} as const

interface Tally {
  stored: number
  storedBytes: number
  cached: number
  refused: string[]
}

export const importCommand: Command = {
  usage: `regmirror import [options] FILE|DIR|-...
  Loads OCI image layouts (tar, tar.gz or a directory, such as regmirror export or skopeo writes) and
  docker save archives into the cache. Every blob is verified against its digest as it streams in;
  manifests are recorded after their blobs and tags after their manifests. A mirror running on the
  same data directory serves what was imported without a restart.
    --pin                  keep the imported images from eviction (listed by regmirror pins)
    --progress MODE        auto, bars, plain or none
  Exit 1 when an image or a blob could not be imported; the images that were whole are imported.`,

  async run(argv) {
    const { flags, positionals, options } = parseFlags(argv, OPTIONS)
    if (positionals.length === 0) throw new UsageError('give an archive, a directory or - (stdin)')
    const config = await loadConfig({ flags, env: process.env })
    const progress = new ProgressView(progressMode(stringOpt(options.progress), process.stderr), 'imported')
    const parts = await openParts(config, toolLogger(flags), { tool: true })
    const started = Date.now()
    const tally: Tally = { stored: 0, storedBytes: 0, cached: 0, refused: [] }
    const images: ImportedImage[] = []
    const failures: string[] = []
    try {
      for (const input of positionals) {
        try {
          images.push(...(await importOne(parts, input, progress, tally)))
        } catch (err) {
          failures.push(`${input}: ${(err as Error).message}`)
          progress.note(`import of ${input} failed: ${(err as Error).message}`)
        }
      }
      const done = images.filter((i) => i.error === undefined && i.target)
      if (options.pin === true && done.length > 0) await updatePinFile(parts.store.layout, { add: done.map((i) => i.target!.ref) })
      await markChanged(parts.store.layout)
    } finally {
      progress.stop()
      await parts.close()
    }
    process.stdout.write(summary(images, tally, failures, Date.now() - started))
    return failures.length > 0 || tally.refused.length > 0 || images.some((i) => i.error !== undefined) ? 1 : 0
  },
}

async function importOne(parts: OpenParts, input: string, progress: Progress, tally: Tally): Promise<ImportedImage[]> {
  const label = input === '-' ? 'stdin' : basename(input)
  progress.imageStart(label)
  const kept = (digest: string, size: number, already: boolean) => {
    if (already) tally.cached++
    else {
      tally.stored++
      tally.storedBytes += size
    }
    progress.blobDone(label, digest, size, already)
  }
  const hooks: ReadHooks = {
    bytes: (n) => progress.bytes(label, n),
    blob: (digest, s) => {
      if (s.state !== 'corrupt') return kept(digest, s.size, s.state === 'cached')
      tally.refused.push(`${digest}: ${s.reason}`)
      progress.note(`blob ${digest} refused: ${s.reason}`)
    },
  }
  let contents: ArchiveContents
  const st = input === '-' ? undefined : await stat(input)
  if (st?.isDirectory()) contents = await readLayoutDir(parts, input, hooks)
  else {
    if (st) progress.imagePlanned(label, 0, st.size)
    contents = await readArchive(parts, input === '-' ? process.stdin : createReadStream(input, { highWaterMark: 1024 * 1024 }), hooks)
  }
  try {
    if (contents.files.has('index.json')) return await importOciImages(parts, contents)
    if (contents.files.has('manifest.json')) return await importDockerSave(parts, contents, kept)
    throw new Error('neither an OCI image layout (index.json) nor a docker save archive (manifest.json)')
  } finally {
    await discardStaged(contents)
    progress.imageDone(label)
  }
}

function summary(images: ImportedImage[], t: Tally, failures: string[], ms: number): string {
  const failed = images.filter((i) => i.error !== undefined)
  const secs = ms / 1000
  const lines = [
    `import: ${count(images.length - failed.length, 'image')} imported, ${failed.length} failed; ${count(t.stored, 'blob')} stored ` +
      `(${formatBytes(t.storedBytes)}), ${t.cached} already cached, ${t.refused.length} refused, in ${formatSeconds(secs)} ` +
      `(${formatBytes(t.storedBytes / Math.max(secs, 0.001))}/s)`,
    ...images
      .filter((i) => i.error === undefined)
      .map((i) => {
        const absent = i.absentPlatforms ? ` (${count(i.absentPlatforms, 'manifest')} of the index not in the archive)` : ''
        return `  ok      ${i.target?.ref ?? i.name} ${i.digest ?? ''}${absent}`.trimEnd()
      }),
    ...failed.map((i) => `  FAILED  ${i.target?.ref ?? i.name}: ${i.error}`),
    ...t.refused.map((r) => `  REFUSED blob ${r}`),
    ...failures.map((f) => `  FAILED  ${f}`),
  ]
  return `${lines.join('\n')}\n`
}
