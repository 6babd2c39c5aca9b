/**
 * Reads `regmirror client-config` output back into its files: several files each start with a line
 * `# TITLE: /absolute/path` (renderFiles), a single file is printed bare.
 */
export interface PrintedFile {
  title: string
  path: string
  text: string
}

const HEADER_RE = /^# ([^:\n]+): (\/\S+)$/

export function splitPrinted(output: string): PrintedFile[] {
  const files: PrintedFile[] = []
  let current: PrintedFile | undefined
  for (const line of output.split('\n')) {
    const m = HEADER_RE.exec(line)
    if (m) {
      current = { title: m[1]!, path: m[2]!, text: '' }
      files.push(current)
    } else if (current) current.text += `${line}\n`
    else if (line !== '') throw new Error(`output does not start with a file header: ${JSON.stringify(line)}`)
  }
  // renderFiles puts one blank line between files, and the output ends with the last file's newline.
  for (const f of files) f.text = f.text.replace(/\n+$/, '\n')
  return files
}
