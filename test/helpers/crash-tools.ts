// Helpers shared by the tests that run the real CLI as a child process and break it.
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { sleep } from './sleep.js'

export async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'regmirror-crash-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Polls `cond` every 50 ms until it holds; fails after about `ms` (a bound for a stuck test, not a timing assertion). */
export async function until(what: string, cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  for (let i = 0; i < ms / 50; i++) {
    if (await cond()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A fetch that resolves with the body, or with the error the broken response raised. */
export async function fetchBody(url: string): Promise<{ status: number; body: Buffer } | Error> {
  try {
    const res = await fetch(url)
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) }
  } catch (err) {
    return err as Error
  }
}

export async function files(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const prefix of await readdir(dir).catch(() => [] as string[])) {
    out.push(...(await readdir(join(dir, prefix)).catch(() => [] as string[])))
  }
  return out
}
