import { statSync } from 'node:fs'

/**
 * Calls `onChange` when any of `files` changed since the last look (mtime, size or inode: an
 * editor's rename and a Kubernetes secret's symlink swap both count), looking every `intervalMs`.
 * Polling rather than fs.watch: watches do not survive a file being replaced by a rename.
 */
export function watchFiles(files: string[], intervalMs: number, onChange: () => void): { stop(): void; check(): boolean } {
  const fingerprint = () =>
    files
      .map((f) => {
        const st = statSync(f, { throwIfNoEntry: false })
        return st ? `${st.ino}:${st.size}:${st.mtimeMs}` : 'missing'
      })
      .join('|')
  let seen = fingerprint()
  const check = () => {
    const now = fingerprint()
    if (now === seen) return false
    seen = now
    onChange()
    return true
  }
  const timer = setInterval(check, intervalMs)
  timer.unref()
  return { stop: () => clearInterval(timer), check }
}
