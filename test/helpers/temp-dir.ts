/**
 * Temporary directories for e2e programs. Short paths under os.tmpdir() (containerd's unix socket path must
 * stay under ~108 bytes), removed recursively by the helpers' stop() functions.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `rm-e2e-${prefix}-`))
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 })
}
