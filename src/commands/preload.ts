import { preload, type ImageResult } from '../airgap/preload.js'
import { ProgressView, progressMode } from '../airgap/progress.js'
import { parsePlatform } from '../airgap/graph.js'
import { readTargets } from '../airgap/refs.js'
import { LocalSource, MirrorSource, type ImageSource } from '../airgap/sources.js'
import { openParts } from '../app.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import { Registries } from '../config/registries.js'
import { count, formatBytes, formatSeconds } from '../format.js'
import { updatePinFile } from '../proxy/pins.js'
import { countOpt, listOpt, markChanged, stringOpt, toolLogger, UsageError, type Command } from './shared.js'

const OPTIONS = {
  file: { type: 'string', multiple: true },
  mirror: { type: 'string' },
  platform: { type: 'string', multiple: true },
  'with-referrers': { type: 'boolean' },
  pin: { type: 'boolean' },
  concurrency: { type: 'string' },
  progress: { type: 'string' },
} as const

export const preloadCommand: Command = {
  usage: `regmirror preload [options] REF... | --file FILE
  Fetches images into the cache with no server running, through the configured upstreams and
  routing (nginx:1.27, ghcr.io/owner/app:1.0, quay.io/x/y@sha256:...); a rerun skips what is cached.
    --file FILE            references, one a line, # comments (- reads stdin); repeatable
    --mirror URL           warm a running mirror instead, by pulling through it (user:password@ in the URL if it asks)
    --platform OS/ARCH     keep only these platforms of an index (the index is kept); repeatable or comma-separated
    --with-referrers       also fetch the images' signatures, SBOMs and attestations
    --pin                  keep what was preloaded from eviction (listed by regmirror pins)
    --concurrency N        blobs fetched at once (default 4)
    --progress MODE        auto (bars on a terminal), bars, plain (a line per blob and image) or none
  Exit 1 when an image failed.`,

  async run(argv) {
    const { flags, positionals, options } = parseFlags(argv, OPTIONS)
    const config = await loadConfig({ flags, env: process.env })
    const registries = new Registries(config)
    const { targets, problems } = await readTargets(positionals, listOpt(options.file), registries)
    if (problems.length > 0) throw new UsageError(problems.join('\n'))
    if (targets.length === 0) throw new UsageError('no image references given')
    const platforms = listOpt(options.platform).flatMap((p) => p.split(',').filter(Boolean).map(parsePlatform))
    const mirror = stringOpt(options.mirror)
    if (mirror !== undefined && options.pin === true) {
      throw new UsageError('--pin keeps images in this machine’s data directory; with --mirror, pin on the mirror (cache.pins)')
    }
    const progress = new ProgressView(progressMode(stringOpt(options.progress), process.stderr), 'fetched')
    const parts = mirror === undefined ? await openParts(config, toolLogger(flags), { tool: true }) : undefined
    const source: ImageSource = parts ? new LocalSource(parts) : new MirrorSource(mirror as string)
    const started = Date.now()
    let results: ImageResult[]
    try {
      results = await preload(
        source,
        targets,
        { platforms, withReferrers: options['with-referrers'] === true, concurrency: countOpt(options.concurrency, 'concurrency', 4) },
        progress,
      )
      progress.stop()
      if (parts) {
        const done = results.filter((r) => r.error === undefined)
        if (options.pin === true && done.length > 0) await updatePinFile(parts.store.layout, { add: done.map((r) => r.target.ref) })
        await markChanged(parts.store.layout)
      }
    } finally {
      progress.stop()
      await source.close()
    }
    process.stdout.write(summary(results, Date.now() - started, mirror ?? config.dataDir))
    return results.some((r) => r.error !== undefined) ? 1 : 0
  },
}

function summary(results: ImageResult[], ms: number, where: string): string {
  const failed = results.filter((r) => r.error !== undefined)
  const fetched = results.reduce((n, r) => n + r.fetchedBytes, 0)
  const cached = results.reduce((n, r) => n + r.cachedBytes, 0)
  const blobs = results.reduce((n, r) => n + r.blobs, 0)
  const lines = [
    `preload: ${count(results.length, 'image')} (${results.length - failed.length} done, ${failed.length} failed), ${count(blobs, 'blob')}: ` +
      `${formatBytes(fetched)} fetched, ${formatBytes(cached)} already cached, in ${formatSeconds(ms / 1000)} ` +
      `(${formatBytes(fetched / Math.max(ms / 1000, 0.001))}/s) into ${where}`,
    ...results.filter((r) => r.error === undefined).map((r) => `  ok      ${r.target.ref} ${r.digest ?? ''}`.trimEnd()),
    ...failed.map((r) => `  FAILED  ${r.target.ref}: ${r.error}`),
  ]
  return `${lines.join('\n')}\n`
}
