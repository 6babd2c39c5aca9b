import { createWriteStream } from 'node:fs'
import { rename, unlink } from 'node:fs/promises'
import type { Writable } from 'node:stream'
import { allCachedTargets, readCachedImage } from '../airgap/cached-images.js'
import { writeOciArchive } from '../airgap/export.js'
import { parsePlatform } from '../airgap/graph.js'
import { preload } from '../airgap/preload.js'
import { ProgressView, progressMode } from '../airgap/progress.js'
import { readTargets, type ImageTarget } from '../airgap/refs.js'
import { LocalSource } from '../airgap/sources.js'
import { openParts, type OpenParts } from '../app.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import { count, formatBytes, formatSeconds } from '../format.js'
import { listOpt, stringOpt, toolLogger, UsageError, type Command } from './shared.js'

const OPTIONS = {
  out: { type: 'string', short: 'o' },
  file: { type: 'string', multiple: true },
  all: { type: 'boolean' },
  platform: { type: 'string', multiple: true },
  fetch: { type: 'boolean' },
  'with-referrers': { type: 'boolean' },
  progress: { type: 'string' },
} as const

export const exportCommand: Command = {
  usage: `regmirror export --out FILE.tar|- [options] REF... | --file FILE | --all
  Writes cached images as an OCI image layout in a tar (skopeo's oci-archive:, oras and other OCI
  tools read it), each named by its full reference. Nothing is written while anything is missing.
    --out FILE, -o FILE    the archive (written beside as FILE.partial-PID, renamed when complete); - is stdout
    --file FILE            references, one a line, # comments; repeatable
    --all                  every image the cache holds a tag for
    --platform OS/ARCH     only these platforms of an index (the index is kept whole); repeatable or comma-separated
    --fetch                fetch what is missing first (as preload does)
    --with-referrers       also the images' cached signatures, SBOMs and attestations
    --progress MODE        auto, bars, plain or none
  Exit 1 when an image is not (wholly) in the cache.`,

  async run(argv) {
    const { flags, positionals, options } = parseFlags(argv, OPTIONS)
    const out = stringOpt(options.out)
    if (out === undefined) throw new UsageError('--out FILE (or - for stdout) is required')
    const config = await loadConfig({ flags, env: process.env })
    const platforms = listOpt(options.platform).flatMap((p) => p.split(',').filter(Boolean).map(parsePlatform))
    const withReferrers = options['with-referrers'] === true
    // The archive may be on stdout: everything for people goes to stderr then.
    const say = out === '-' ? process.stderr : process.stdout
    const parts = await openParts(config, toolLogger(flags), { tool: true })
    try {
      const targets = await chooseTargets(parts, positionals, listOpt(options.file), options.all === true)
      const progress = new ProgressView(progressMode(stringOpt(options.progress), process.stderr), 'written')
      if (options.fetch === true) {
        const fetched = await preload(new LocalSource(parts), targets, { platforms, withReferrers, concurrency: 4 }, progress)
        for (const r of fetched) if (r.error) progress.note(`cannot fetch ${r.target.ref}: ${r.error}`)
      }
      const images = await Promise.all(targets.map((t) => readCachedImage(parts, t, platforms, withReferrers)))
      const missing = images.flatMap((i) => i.missing)
      if (missing.length > 0) {
        progress.stop()
        process.stderr.write(`export: nothing written; not in the cache:\n${missing.map((m) => `  ${m}`).join('\n')}\n`)
        process.stderr.write('  (preload them, or export with --fetch; --platform exports some platforms of an index)\n')
        return 1
      }
      const started = Date.now()
      const result = await writeTo(out, (w) => writeOciArchive(parts, images, w, progress).finally(() => progress.stop()))
      const secs = (Date.now() - started) / 1000
      say.write(
        `export: ${count(images.length, 'image')}, ${count(result.blobs, 'blob')}, ${formatBytes(result.bytes)} in ${formatSeconds(secs)} ` +
          `(${formatBytes(result.bytes / Math.max(secs, 0.001))}/s) to ${out === '-' ? 'stdout' : out}\n`,
      )
      return 0
    } finally {
      await parts.close()
    }
  },
}

async function chooseTargets(parts: OpenParts, refs: string[], files: string[], all: boolean): Promise<ImageTarget[]> {
  if (all) {
    if (refs.length > 0 || files.length > 0) throw new UsageError('--all exports everything: give no references with it')
    const targets = await allCachedTargets(parts)
    if (targets.length === 0) throw new UsageError('the cache holds no tagged image')
    return targets
  }
  const { targets, problems } = await readTargets(refs, files, parts.registries)
  if (problems.length > 0) throw new UsageError(problems.join('\n'))
  if (targets.length === 0) throw new UsageError('no image references given (or --all)')
  return targets
}

/** Runs `write` on stdout, or on a file that only gets its name once it is complete. */
async function writeTo<T>(out: string, write: (w: Writable) => Promise<T>): Promise<T> {
  if (out === '-') return write(process.stdout)
  const partial = `${out}.partial-${process.pid}`
  try {
    const result = await write(createWriteStream(partial, { flags: 'wx' }))
    await rename(partial, out)
    return result
  } catch (err) {
    await unlink(partial).catch(() => {})
    throw err
  }
}
