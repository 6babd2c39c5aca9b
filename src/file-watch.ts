import { statSync } from 'node:fs'

/**
 * Calls `onChange` when any of `files` changed and then stayed the same for one look (mtime, size or inode: an
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
  // A change is acted on once it has held for one look: a file rewritten in place (`cat > file`, an
  // editor without rename) is seen truncated or half-written in between, and reading it then would
  // load a partial user list or refuse a good certificate.
  let pending: string | undefined
  const check = () => {
    const now = fingerprint()
    if (now === seen) {
      pending = undefined
      return false
    }
    if (now !== pending) {
      pending = now
      return false
    }
    seen = now
    pending = undefined
    onChange()
    return true
  }
  const timer = setInterval(check, intervalMs)
  timer.unref()
  return { stop: () => clearInterval(timer), check }
}
