/**
 * What each kind of client needs in its own configuration to pull through this mirror, generated from the
 * resolved configuration (`regmirror client-config`; the README's client sections are this output). One
 * mirror URL serves every upstream; each client names the registry its own way (docs: README "Clients"):
 * the Docker daemon sends plain names (the default upstream), containerd and k3s add `?ns=<registry>`,
 * containers/image (podman, CRI-O, skopeo) puts the registry in the mirror's path.
 */
import { hostname } from 'node:os'
import { stringify as toYaml } from 'yaml'
import type { Config, UpstreamConfig } from '../config/schema.js'
import { namesRegistry } from '../oci/reference.js'

export const CLIENTS = ['docker', 'containerd', 'podman', 'k3s'] as const
export type Client = (typeof CLIENTS)[number]

/** One file to write on a client machine. */
export interface ClientFile {
  path: string
  text: string
  /** How to read `text`: tests parse it with a real parser of this format. */
  format: 'json' | 'toml' | 'yaml'
}

export interface ClientConfig {
  client: Client
  title: string
  files: ClientFile[]
  /** What the files cannot say (JSON has no comments) or what else the client needs: printed on stderr. */
  notes: string[]
}

/** The mirror as clients reach it: its origin and what that implies. */
export interface MirrorAddress {
  /** `http://mirror.example.internal:5000`, no trailing slash. */
  url: string
  /** `mirror.example.internal:5000` (the port left out when it is the scheme's default). */
  host: string
  /** Plain HTTP: every client must be told to allow it. */
  insecure: boolean
}

/** `--mirror URL`: an http(s) origin, nothing else (clients append `/v2/` themselves). Throws with the reason. */
export function parseMirrorUrl(text: string): MirrorAddress {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new Error(`${JSON.stringify(text)} is not a URL (expected http://HOST:PORT or https://HOST:PORT)`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${text}: must be http:// or https://`)
  // Each client keeps it in a world-readable file: credentials go to each client's own login instead.
  if (u.username !== '' || u.password !== '') throw new Error(`${u.host}: no user or password in the mirror URL (use each client's login)`)
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
    throw new Error(`${text}: the mirror URL is an origin only, without a path or query (clients add /v2/ themselves)`)
  }
  return { url: u.origin, host: u.host, insecure: u.protocol === 'http:' }
}

/**
 * The mirror URL from the server's own listener: the TLS listener when there is a certificate, else the plain
 * one. A wildcard listen host (0.0.0.0, ::) is no address a client can use: this machine's host name stands in
 * for it, with a note.
 */
export function mirrorFromConfig(config: Config, thisHost = hostname()): { mirror: MirrorAddress; notes: string[] } {
  const tls = config.server.tls.cert !== undefined
  const { host, port } = tls ? config.server.tls.listen : config.listen
  const notes: string[] = []
  let name = host
  if (host === '0.0.0.0' || host === '::' || host === '') {
    name = thisHost
    notes.push(
      `the mirror listens on ${host.includes(':') ? `[${host}]` : host}:${port} (every interface): the snippets name it ${thisHost}, ` +
        "this machine's host name; give --mirror URL with the name or address the clients reach it by",
    )
  } else if (host === 'localhost' || host.startsWith('127.') || host === '::1') {
    notes.push(`the mirror listens on ${host}: only this machine can reach it (listen on 0.0.0.0 for others)`)
  }
  const hostPart = name.includes(':') ? `[${name}]` : name
  return { mirror: parseMirrorUrl(`${tls ? 'https' : 'http'}://${hostPart}:${port}`), notes }
}

/** The upstreams a client can name in an image reference, and the notes about those it cannot. */
function registries(config: Config): { names: string[]; notes: string[] } {
  const names: string[] = []
  const notes: string[] = []
  for (const up of config.upstreams) {
    if (namesRegistry(up.name)) names.push(up.name)
    else {
      notes.push(
        `upstream ${up.name} is not a registry host name (no '.' or ':'): clients read ${up.name}/app as a Docker Hub image, so it is ` +
          `left out; reach it by path prefix (MIRROR/${up.name}/app:tag)`,
      )
    }
  }
  return { names, notes }
}

/** The registry's own address: where containerd goes when the mirror fails (the same default containerd has). */
function registryServer(name: string): string {
  return name === 'docker.io' ? 'https://registry-1.docker.io' : `https://${name}`
}

/** TOML basic strings take JSON's escapes; names and URLs here never need more. */
const tomlString = (s: string): string => JSON.stringify(s)

/** daemon.json as people write it: a key a line, each list on its line. */
function jsonLines(obj: Record<string, string[]>): string {
  const lines = Object.entries(obj).map(([k, list]) => `  ${JSON.stringify(k)}: [${list.map((x) => JSON.stringify(x)).join(', ')}]`)
  return `{\n${lines.join(',\n')}\n}\n`
}

function docker(config: Config, mirror: MirrorAddress, names: string[]): ClientConfig {
  const notes: string[] = []
  const json: Record<string, string[]> = {}
  const hub = config.upstreams.find((u: UpstreamConfig) => u.name === 'docker.io')
  // The daemon sends Hub's names without a registry; only the default upstream can answer them.
  if (hub === undefined) notes.push('no docker.io upstream: registry-mirrors (Docker Hub only) is left out')
  else if (config.defaultUpstream !== 'docker.io') {
    notes.push(
      `defaultUpstream is ${config.defaultUpstream}, not docker.io: through registry-mirrors Docker Hub images would be looked up ` +
        `there, so registry-mirrors is left out; pull Hub images as ${mirror.host}/docker.io/library/alpine:3.20`,
    )
  } else json['registry-mirrors'] = [mirror.url]
  // Needed for the path-prefix pulls of other registries (registry-mirrors itself takes http:// as it is).
  if (mirror.insecure) json['insecure-registries'] = [mirror.host]
  const others = names.filter((n) => n !== 'docker.io')
  notes.push(
    'Docker uses registry-mirrors for Docker Hub images only' +
      (others.length > 0
        ? `; other registries through the mirror by path prefix: docker pull ${mirror.host}/${others[0]}/owner/app:1.0`
        : ''),
  )
  return {
    client: 'docker',
    title: 'Docker daemon',
    files: Object.keys(json).length > 0 ? [{ path: '/etc/docker/daemon.json', text: jsonLines(json), format: 'json' }] : [],
    notes,
  }
}

function containerd(mirror: MirrorAddress, names: string[]): ClientConfig {
  const files = names.map((name): ClientFile => ({
    path: `/etc/containerd/certs.d/${name}/hosts.toml`,
    format: 'toml',
    text: [
      `server = ${tomlString(registryServer(name))}`,
      '',
      `[host.${tomlString(mirror.url)}]`,
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n'),
  }))
  return {
    client: 'containerd',
    title: 'containerd',
    files,
    notes: [
      'containerd reads these with config_path = "/etc/containerd/certs.d" in config.toml, under ' +
        '[plugins."io.containerd.grpc.v1.cri".registry] (containerd 1.x) or [plugins."io.containerd.cri.v1.images".registry] (2.x); ' +
        'ctr with --hosts-dir /etc/containerd/certs.d. If the mirror fails, containerd goes to `server`',
    ],
  }
}

function podman(mirror: MirrorAddress, names: string[]): ClientConfig {
  const blocks = names.map((name) =>
    [
      '[[registry]]',
      `prefix = ${tomlString(name)}`,
      `location = ${tomlString(name)}`,
      '',
      '[[registry.mirror]]',
      `location = ${tomlString(`${mirror.host}/${name}`)}`,
      ...(mirror.insecure ? ['insecure = true'] : []),
      '',
    ].join('\n'),
  )
  return {
    client: 'podman',
    title: 'podman, CRI-O, buildah, skopeo',
    files: names.length > 0 ? [{ path: '/etc/containers/registries.conf.d/regmirror.conf', text: blocks.join('\n'), format: 'toml' }] : [],
    notes: [
      'a drop-in beside /etc/containers/registries.conf (its [[registry]] entries replace those of the same prefix there); ' +
        'if the mirror fails, the client goes to `location`',
    ],
  }
}

function k3s(mirror: MirrorAddress, names: string[]): ClientConfig {
  const mirrors = Object.fromEntries(names.map((name) => [name, { endpoint: [mirror.url] }]))
  return {
    client: 'k3s',
    title: 'k3s, RKE2',
    files:
      names.length > 0 ? [{ path: '/etc/rancher/k3s/registries.yaml', text: toYaml({ mirrors }, { lineWidth: 0 }), format: 'yaml' }] : [],
    notes: [
      'k3s writes a containerd hosts.toml per mirror from this (the endpoint without a path: requests carry ?ns=<registry>, no ' +
        'rewrite needed); restart k3s (or k3s-agent) on each node. RKE2 reads the same file as /etc/rancher/rke2/registries.yaml',
    ],
  }
}

/** Notes about the mirror's own settings that each client has to match: TLS trust and credentials. */
function commonNotes(config: Config, mirror: MirrorAddress): string[] {
  const notes: string[] = []
  if (!mirror.insecure) {
    notes.push(
      `if the mirror's certificate is from the site's own CA, each client trusts it: Docker /etc/docker/certs.d/${mirror.host}/ca.crt, ` +
        `containerd ca = "..." in the [host] table, podman /etc/containers/certs.d/${mirror.host}/ca.crt, ` +
        `k3s configs: {"${mirror.host}": {tls: {ca_file: ...}}}`,
    )
  }
  if (config.auth.htpasswd !== undefined) {
    notes.push(
      'the mirror asks for credentials (auth.htpasswd): the Docker daemon never sends any to registry-mirrors, so its networks go in ' +
        'auth.anonymous.cidrs; containerd takes them from the CRI auths (ctr --user), podman from podman login, ' +
        `k3s from configs: {"${mirror.host}": {auth: {username, password}}}`,
    )
  }
  return notes
}

/** The configuration of each client asked for, in CLIENTS order, and the notes that concern them all. */
export function clientConfigs(
  config: Config,
  mirror: MirrorAddress,
  which: readonly Client[] = CLIENTS,
): { configs: ClientConfig[]; notes: string[] } {
  const { names, notes } = registries(config)
  const build: Record<Client, () => ClientConfig> = {
    docker: () => docker(config, mirror, names),
    containerd: () => containerd(mirror, names),
    podman: () => podman(mirror, names),
    k3s: () => k3s(mirror, names),
  }
  return { configs: CLIENTS.filter((c) => which.includes(c)).map((c) => build[c]()), notes: [...notes, ...commonNotes(config, mirror)] }
}

/**
 * The files as one text. A single file is printed as it is, so it can be redirected into place; several
 * each get a first line `# TITLE: PATH` (a comment to TOML and YAML; for daemon.json, a line to leave out).
 */
export function renderFiles(configs: readonly ClientConfig[]): string {
  const all = configs.flatMap((c) => c.files.map((f) => ({ title: c.title, file: f })))
  if (all.length === 1) return all[0]!.file.text
  return all.map(({ title, file }) => `# ${title}: ${file.path}\n${file.text}`).join('\n')
}
