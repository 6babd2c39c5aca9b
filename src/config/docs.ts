/**
 * The reference tables of docs/configuration.md, rendered from the declarations. Each table sits between
 * `<!-- settings: NAME -->` and `<!-- /settings: NAME -->`; the prose around them is written by hand.
 * `npm run docs` rewrites them, and a test fails while the file differs from what this renders.
 */
import { entries, isList, type Declaration, type Table } from './declare.js'
import { CONFIG_FILE, DEFAULT_CONFIG_FILE, SETTINGS } from './settings.js'
import { ENDPOINT_FIELDS } from './endpoints.js'
import { UPSTREAM_FIELDS, WELL_KNOWN_UPSTREAMS } from './upstreams.js'

const code = (s: string): string => `\`${s}\``

function shown(v: unknown): string {
  return code(Array.isArray(v) ? `[${v.map(String).join(', ')}]` : String(v))
}

function defaultCell(d: Declaration): string {
  if (d.docDefault !== undefined) return d.docDefault
  if (d.required) return 'required'
  if (d.inherits !== undefined) return `top-level ${code(d.inherits)} (${String((SETTINGS as Table)[d.inherits]?.default)})`
  return d.default === undefined ? '—' : shown(d.default)
}

function flagCell(d: Declaration): string {
  if (d.flag === undefined) return '—'
  const repeat = isList(d) ? (d.append ? ' (repeatable, appended)' : ' (repeatable)') : ''
  // A boolean's flag is a switch: `--offline`.
  return `${code(d.arg === undefined ? `--${d.flag}` : `--${d.flag} ${d.arg}`)}${repeat}`
}

/** A markdown table of settings; the Env and Flag columns only when some row has one. */
function settingsTable(rows: [field: string, d: Declaration][]): string {
  const layers = rows.some(([, d]) => d.env !== undefined || d.flag !== undefined)
  const head = ['Field', 'Type', 'Default', ...(layers ? ['Env', 'Flag'] : []), 'Meaning']
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`]
  for (const [field, d] of rows) {
    const cells = [field, d.type.doc, defaultCell(d), ...(layers ? [d.env === undefined ? '—' : code(d.env), flagCell(d)] : []), d.doc]
    lines.push(`| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`)
  }
  return lines.join('\n')
}

/** Settings grouped by their first path component; a section of one setting goes to the top-level table. */
function sections(t: Table): Map<string, [string, Declaration][]> {
  const groups = new Map<string, [string, Declaration][]>()
  for (const [path, d] of entries(t)) {
    const head = path.includes('.') ? path.slice(0, path.indexOf('.')) : ''
    if (!groups.has(head)) groups.set(head, [])
    groups.get(head)!.push([path, d])
  }
  const top: [string, Declaration][] = []
  const out = new Map<string, [string, Declaration][]>([['top-level', top]])
  for (const [head, rows] of groups) {
    if (head === '' || rows.length === 1) top.push(...rows)
    else out.set(head, rows)
  }
  // The top-level table keeps the table's order.
  top.sort((a, b) => Object.keys(t).indexOf(a[0]) - Object.keys(t).indexOf(b[0]))
  return out
}

/** Every generated table, by the name of its block. */
export function renderTables(): Map<string, string> {
  const out = new Map<string, string>()
  for (const [name, rows] of sections(SETTINGS)) {
    const withFile: [string, Declaration][] = name === 'top-level' ? [['—', CONFIG_FILE], ['—', DEFAULT_CONFIG_FILE], ...rows] : rows
    out.set(name, settingsTable(withFile.map(([path, d]) => [path === '—' ? path : code(path), d])))
  }
  out.set('upstream-fields', settingsTable(entries(UPSTREAM_FIELDS).map(([k, d]) => [code(k), d])))
  out.set('endpoint-fields', settingsTable(entries(ENDPOINT_FIELDS).map(([k, d]) => [code(k), d])))
  const builtIns = Object.entries(WELL_KNOWN_UPSTREAMS).map(
    ([n, u]) => `| ${code(n)} | ${code(u.url)} | ${code(String(u.libraryPrefix))} |`,
  )
  out.set('built-in-upstreams', ['| Name | URL | `libraryPrefix` |', '|---|---|---|', ...builtIns].join('\n'))
  return out
}

const BLOCK = /<!-- settings: ([a-z-]+) -->\n[\s\S]*?<!-- \/settings: \1 -->/g

/** `text` (docs/configuration.md) with every block's table rendered anew; throws if a block is missing or unknown. */
export function updateConfigDocs(text: string): string {
  const tables = renderTables()
  const seen = new Set<string>()
  const unknown: string[] = []
  const updated = text.replace(BLOCK, (_, name: string) => {
    const table = tables.get(name)
    if (table === undefined) unknown.push(name)
    seen.add(name)
    return `<!-- settings: ${name} -->\n${table ?? ''}\n<!-- /settings: ${name} -->`
  })
  const missing = [...tables.keys()].filter((n) => !seen.has(n))
  const problems = [
    ...missing.map((n) => `no place for the table "${n}": add <!-- settings: ${n} --> and <!-- /settings: ${n} --> where it belongs`),
    ...unknown.map((n) => `the block "${n}" is not a table any declaration produces`),
  ]
  if (problems.length > 0) throw new Error(`docs/configuration.md: ${problems.join('; ')}`)
  return updated
}
