/**
 * Checks on what a client wrote to disk after a pull through the mirror: every blob's bytes hash to its name,
 * and the digests are the ones the source layout had.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { RequestRecord } from './counting-proxy.js'
import { sha256 } from './oci-fixtures.js'

export interface PulledOciLayout {
  /** The digest index.json points at for the tag. */
  topDigest: string
  /** Every blob in blobs/sha256, each checked: its bytes hash to its file name. */
  blobDigests: string[]
  /** Blobs whose content does not match their name (should be empty). */
  corrupt: string[]
}

/** Reads an OCI layout a client wrote (`oci:DIR:TAG`) and verifies every blob against its file name. */
export async function readPulledOciLayout(dir: string): Promise<PulledOciLayout> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] }
  const blobsDir = join(dir, 'blobs', 'sha256')
  const blobDigests: string[] = []
  const corrupt: string[] = []
  for (const name of await readdir(blobsDir)) {
    const digest = `sha256:${name}`
    blobDigests.push(digest)
    if (sha256(await readFile(join(blobsDir, name))) !== digest) corrupt.push(digest)
  }
  return { topDigest: index.manifests[0]?.digest ?? '', blobDigests: blobDigests.sort(), corrupt }
}

export interface PulledDir {
  /** sha256 of manifest.json as written. */
  manifestDigest: string
  /** Every blob file (named by hex), checked against its content. */
  blobDigests: string[]
  corrupt: string[]
}

/** Reads a `dir:` transport directory (manifest.json + one file per blob named by its hex digest). */
export async function readPulledDir(dir: string): Promise<PulledDir> {
  const manifestDigest = sha256(await readFile(join(dir, 'manifest.json')))
  const blobDigests: string[] = []
  const corrupt: string[] = []
  for (const name of await readdir(dir)) {
    if (!/^[a-f0-9]{64}$/.test(name)) continue
    const digest = `sha256:${name}`
    blobDigests.push(digest)
    if (sha256(await readFile(join(dir, name))) !== digest) corrupt.push(digest)
  }
  return { manifestDigest, blobDigests: blobDigests.sort(), corrupt }
}

/** Successful blob GETs among `records` (what an upstream actually sent), optionally only those in `digests`. */
export function blobGets(records: RequestRecord[], digests?: readonly string[]): RequestRecord[] {
  return records.filter(
    (r) =>
      r.method === 'GET' &&
      /\/blobs\/sha256:[a-f0-9]{64}$/.test(r.path) &&
      r.status >= 200 &&
      r.status < 300 &&
      (digests === undefined || digests.some((d) => r.path.endsWith(d))),
  )
}
