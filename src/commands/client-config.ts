import { CLIENTS, clientConfigs, mirrorFromConfig, parseMirrorUrl, renderFiles, type Client } from '../clients/client-config.js'
import { parseFlags } from '../config/args.js'
import { loadConfig } from '../config/load.js'
import { stringOpt, UsageError, type Command } from './shared.js'

const OPTIONS = {
  docker: { type: 'boolean' },
  containerd: { type: 'boolean' },
  podman: { type: 'boolean' },
  k3s: { type: 'boolean' },
  mirror: { type: 'string' },
} as const

export const clientConfigCommand: Command = {
  usage: `regmirror client-config [--docker] [--containerd] [--podman] [--k3s] [--mirror URL] [options]
  Prints what each client needs in its own configuration to pull every configured upstream's images
  through this mirror (without a client flag: all four). Notes go to stderr. One file is printed as
  it is; several each start with a line "# CLIENT: PATH".
    --docker               /etc/docker/daemon.json (registry-mirrors: Docker Hub images only)
    --containerd           /etc/containerd/certs.d/REGISTRY/hosts.toml, one per upstream
    --podman               a containers registries.conf drop-in (podman, CRI-O, buildah, skopeo)
    --k3s                  /etc/rancher/k3s/registries.yaml (k3s, RKE2)
    --mirror URL           the mirror as clients reach it (default: this server's listen address,
                           or its TLS listener when it has a certificate)`,

  async run(argv) {
    const { flags, positionals, options } = parseFlags(argv, OPTIONS)
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`)
    const config = await loadConfig({ flags, env: process.env })
    const asked = CLIENTS.filter((c: Client) => options[c] === true)
    const given = stringOpt(options.mirror)
    let mirror
    const notes: string[] = []
    if (given === undefined) {
      const fromConfig = mirrorFromConfig(config)
      mirror = fromConfig.mirror
      notes.push(...fromConfig.notes)
    } else {
      try {
        mirror = parseMirrorUrl(given)
      } catch (e) {
        throw new UsageError(`--mirror ${(e as Error).message}`)
      }
    }
    const out = clientConfigs(config, mirror, asked.length > 0 ? asked : CLIENTS)
    notes.push(...out.notes)
    const files = out.configs.flatMap((c) => c.files)
    for (const c of out.configs) {
      if (c.files.length === 0) notes.push(`${c.title}: nothing to configure`)
      // A single file is printed bare: its path is only here.
      else if (files.length === 1) notes.push(`${c.title}: write this to ${c.files[0]!.path}`)
      notes.push(...c.notes.map((n) => `${c.title}: ${n}`))
    }
    process.stdout.write(renderFiles(out.configs))
    process.stderr.write(notes.map((n) => `note: ${n}\n`).join(''))
    return 0
  },
}
