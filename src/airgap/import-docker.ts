import { createHash } from 'node:crypto'
import { readFile, unlink } from 'node:fs/promises'
import type { OpenParts } from '../app.js'
import { Admission } from '../cache/admission.js'
import { OCI_MANIFEST } from '../oci/media-types.js'
import { parseDigest } from '../oci/reference.js'
import type { ArchiveContents, Staged } from './archive-read.js'
import { recordImage, type ImportedImage } from './import.js'
import { parseTarget } from './refs.js'

const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'

interface SaveEntry {
  Config?: unknown
  RepoTags?: unknown
  Layers?: unknown
}

/**
 * A `docker save` archive of Docker before 25 (manifest.json, `<config hex>.json`, `<id>/layer.tar`):
 * it holds no manifest, so one is written, an OCI image manifest over the same config and the
 * uncompressed layers (what every client pulls). What is checked: the config hashes to its file
 * name, and the layers, in order, to the config's `rootfs.diff_ids`. Digests differ from the
 * registry's (its layers were compressed); the image is the same. One image per RepoTags entry.
 */
export async function importDockerSave(parts: OpenParts, contents: ArchiveContents, onKept: KeptHook = () => {}): Promise<ImportedImage[]> {
  let entries: SaveEntry[]
  try {
    entries = JSON.parse((contents.files.get('manifest.json') as Buffer).toString('utf8')) as SaveEntry[]
    if (!Array.isArray(entries)) throw new Error()
  } catch {
    throw new Error('manifest.json is not a docker save manifest')
  }
  const results: ImportedImage[] = []
  for (const e of entries) {
    const tags = Array.isArray(e.RepoTags) ? e.RepoTags.filter((t): t is string => typeof t === 'string') : []
    if (tags.length === 0) {
      results.push({
        name: `(untagged ${String(e.Config)})`,
        error: 'the archive gives it no name (docker save IMAGE_ID): save it by name',
      })
      continue
    }
    try {
      const manifest = await keepImage(parts, contents, e, onKept)
      for (const name of tags) {
        const r: ImportedImage = { name }
        results.push(r)
        try {
          r.target = parseTarget(name, parts.registries)
          await recordImage(parts, r.target, manifest.digest, [manifest])
          r.digest = manifest.digest
        } catch (err) {
          r.error = (err as Error).message
        }
      }
    } catch (err) {
      for (const name of tags) results.push({ name, error: (err as Error).message })
    }
  }
  return results
}

/** Told of each staged file kept: stored now, or `already` in the cache. */
export type KeptHook = (digest: string, size: number, already: boolean) => void

async function keepImage(parts: OpenParts, contents: ArchiveContents, e: SaveEntry, onKept: KeptHook) {
  const configName = typeof e.Config === 'string' ? e.Config : ''
  const config = staged(contents, configName)
  const expected = /^([a-f0-9]{64})\.json$/.exec(configName)?.[1]
  if (!expected || config.digest !== `sha256:${expected}`)
    throw new Error(`config ${configName} is damaged in the archive (its bytes hash to ${config.digest})`)
  const layers = (Array.isArray(e.Layers) ? e.Layers : []).map((l) => staged(contents, String(l)))
  const diffIds = await configDiffIds(config)
  layers.forEach((l, i) => {
    if (diffIds[i] !== l.digest)
      throw new Error(
        `layer ${i + 1} (${String((e.Layers as unknown[])[i])}) is damaged in the archive: it hashes to ${l.digest}, the config says ${diffIds[i] ?? 'nothing'}`,
      )
  })
  if (diffIds.length !== layers.length) throw new Error(`the config names ${diffIds.length} layers, the archive ${layers.length}`)
  for (const s of [config, ...layers]) onKept(s.digest, s.size, !(await keepStaged(parts, s)))
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
    }),
  )
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`
  await parts.store.writeVerified(parseDigest(digest), body)
  await parts.index.add(digest, body.length)
  return { digest, mediaType: OCI_MANIFEST, body }
}

function staged(contents: ArchiveContents, name: string): Staged {
  const s = contents.staged.get(name) ?? contents.staged.get(contents.links.get(name) ?? '')
  if (!s) throw new Error(`${name} is named by manifest.json but not in the archive`)
  return s
}

async function configDiffIds(config: Staged): Promise<string[]> {
  const text = config.size <= 16 * 1024 * 1024 ? await readFile(config.path, 'utf8') : '{}'
  const ids = (JSON.parse(text) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids
  return Array.isArray(ids) ? ids.map(String) : []
}

/** A staged file, verified by the checks above, moved into the cache under the cap as a fill's would be; false when it was there already. */
async function keepStaged(parts: OpenParts, s: Staged): Promise<boolean> {
  const d = parseDigest(s.digest)
  if ((await parts.index.adopt(s.digest)) !== undefined) return false
  if (!(await parts.links.markRestricted(d))) throw new Error(`cannot mark ${s.digest} private`)
  const admission = new Admission(parts.store, parts.index, d, parts.log)
  if (!(await admission.admit(s.size))) throw new Error(`${s.digest} cannot be kept: the cache has no room for it (cache.maxSize)`)
  try {
    await admission.commit(s.path, s.size)
  } catch (err) {
    admission.abandon()
    await unlink(s.path).catch(() => {})
    throw err
  }
  return true
}
