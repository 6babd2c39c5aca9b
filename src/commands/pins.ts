import { parseTarget } from '../airgap/refs.js'
import { openParts } from '../app.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import { formatBytes } from '../format.js'
import { readPinFile, updatePinFile } from '../proxy/pins.js'
import { toolLogger, UsageError, type Command } from './shared.js'

export const pinsCommand: Command = {
  usage: `regmirror pins [remove REF...]
  Lists the pinned images (never evicted): those of the configuration (cache.pins, --pin) and those
  preload --pin and import --pin added to the data directory, with what of each is cached.
  remove REF... unpins images the data directory pins (configured pins are removed from the configuration).`,

  async run(argv) {
    const { flags, positionals } = parseFlags(argv)
    const config = await loadConfig({ flags, env: process.env })
    const parts = await openParts(config, toolLogger(flags), { tool: true })
    try {
      const [sub, ...refs] = positionals
      if (sub === 'remove') {
        if (refs.length === 0) throw new UsageError('pins remove: give the references to unpin')
        const names = refs.map((r) => parseTarget(r, parts.registries).ref)
        const before = await readPinFile(parts.store.layout)
        const unknown = names.filter((n) => !before.includes(n))
        await updatePinFile(parts.store.layout, { remove: names })
        for (const n of names) if (!unknown.includes(n)) process.stdout.write(`unpinned ${n}\n`)
        if (unknown.length > 0) {
          process.stderr.write(`not pinned in ${config.dataDir}: ${unknown.join(', ')}\n`)
          return 1
        }
        return 0
      }
      if (sub !== undefined) throw new UsageError(`pins ${sub}: unknown (list with no argument, or remove REF...)`)
      const list = await parts.pins.list()
      if (list.length === 0) process.stdout.write('no pinned images\n')
      for (const p of list) {
        const where = p.origin === 'config' ? 'config' : 'data dir'
        const what = p.cached === 0 ? 'nothing cached yet' : `${p.root} ${p.cached} cached, ${formatBytes(p.bytes)}`
        process.stdout.write(`${p.ref}\t${where}\t${what}\n`)
      }
      return 0
    } finally {
      await parts.close()
    }
  },
}
