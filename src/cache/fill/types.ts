import type { FileHandle } from 'node:fs/promises'
import type { RegmirrorError } from '../../errors.js'

/** The cache's side of a fill (cache/admission.ts implements it). */
export interface FillCache {
  /** Decides, once the size is known, whether to keep the blob (reserving room) or stream it through. */
  admit(size: number | undefined): Promise<boolean>
  /** A blob of unannounced size: reserves `bytes` more before the temp file grows past what is reserved. */
  reserveMore?(bytes: number): Promise<boolean>
  /** Moves the verified temp file into the store and indexes it. */
  commit(tmpPath: string, size: number): Promise<void>
  /** Gives back what admit reserved when the fill fails or the blob is not kept. */
  abandon(size: number | undefined): void
}

/** What a fill tells its owner, for metrics and logs. */
export interface FillEvents {
  onResume?(offset: number, attempt: number, err: unknown): void
  onFailed?(err: RegmirrorError): void
  /** The temp file could not be opened or written (full disk, unwritable directory): the fill goes on uncached. */
  onWriteError?(err: NodeJS.ErrnoException, offset: number): void
}

export type FillHooks = FillCache & FillEvents

export interface FillOptions {
  /** Opens the temp file; a seam so tests can simulate a full disk (root ignores permissions). */
  openFile?: (path: string) => Promise<FileHandle>
  /** Bytes an uncached (memory-mode) fill may hold for readers that lag behind (default 4 MiB). */
  memoryWindow?: number
  /** The most a blob of unannounced size may be while the disk is not written (default: no limit). */
  maxUnsized?: number
}

export type FillState = 'starting' | 'running' | 'done' | 'failed'
