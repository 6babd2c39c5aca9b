/**
 * The chart's README against its values.yaml: every value has a row in the values tables (a map may be documented
 * as a whole), every row names a value that exists, and each row's default is the one values.yaml has. A value added
 * without a row, or a default changed in one place only, fails here.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { parse } from 'yaml'
import { CHART_DIR } from '../helpers/helm.js'

const values = parse(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as Record<string, unknown>
const readme = readFileSync(join(CHART_DIR, 'README.md'), 'utf8')

/** `| \`key\` | \`default\` | meaning |` rows after the "## Values" heading, until the next `## ` heading. */
function rows(markdown: string): { key: string; def: string; line: number }[] {
  const lines = markdown.split('\n')
  const start = lines.findIndex((l) => l === '## Values')
  const out: { key: string; def: string; line: number }[] = []
  for (let i = start + 1; start >= 0 && i < lines.length && !lines[i]!.startsWith('## '); i++) {
    const m = /^\| `([^`]+)` \| `(.*)` \| .*\|$/.exec(lines[i]!)
    if (m) out.push({ key: m[1]!, def: m[2]!, line: i + 1 })
    else if (/^\| `/.test(lines[i]!)) out.push({ key: '', def: '', line: i + 1 })
  }
  return out
}

function at(path: string): { found: boolean; value?: unknown } {
  let node: unknown = values
  for (const part of path.split('.')) {
    if (node === null || typeof node !== 'object' || Array.isArray(node) || !(part in node)) return { found: false }
    node = (node as Record<string, unknown>)[part]
  }
  return { found: true, value: node }
}

/** Paths of values.yaml down to the leaves: scalars, lists and empty maps. */
function leaves(node: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(node).flatMap(([k, v]) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0
      ? leaves(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`],
  )
}

t.test('the README documents every value of values.yaml, with its default', async (t) => {
  const table = rows(readme)
  t.ok(table.length > 100, `${table.length} rows`)
  t.same(
    table.filter((r) => r.key === '').map((r) => `README.md:${r.line}`),
    [],
    'every row has the form | `key` | `default` | meaning |',
  )
  const documented = new Set(table.map((r) => r.key))
  t.same(
    table.filter((r) => !at(r.key).found).map((r) => r.key),
    [],
    'every row names a value that exists',
  )
  const covered = (leaf: string) => [...documented].some((k) => leaf === k || leaf.startsWith(`${k}.`))
  t.same(
    leaves(values).filter((l) => !covered(l)),
    [],
    'every value has a row (or its map has one)',
  )
  const wrong = table
    .filter((r) => at(r.key).found && !isDeepStrictEqual(parse(r.def), at(r.key).value))
    .map((r) => `${r.key}: README says ${r.def}, values.yaml ${JSON.stringify(at(r.key).value)}`)
  t.same(wrong, [], 'every default is the one values.yaml has')
  t.same(
    table.map((r) => r.key).filter((k, i, all) => all.indexOf(k) !== i),
    [],
    'no value twice',
  )
})
