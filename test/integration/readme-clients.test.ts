/**
 * The README's client snippets are what `regmirror client-config` prints. Each snippet the README marks with
 * `<!-- client-config ARGS -->` must appear, line for line, in the output of
 * `regmirror client-config --mirror http://mirror.example.internal:5000 ARGS` for the default configuration (the
 * README says so), and must parse in its own format. Every client has at least one such snippet.
 */
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { runCli } from '../helpers/cli.js'

const MIRROR = 'http://mirror.example.internal:5000'
const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
const SNIPPET_RE = /<!-- client-config ([^>]*?) -->\n```(\w+)\n([\s\S]*?)```/g
const snippets = [...readme.matchAll(SNIPPET_RE)].map((m) => ({ args: m[1]!.split(' '), lang: m[2]!, text: m[3]! }))

t.test('every client has a snippet in the README', async (t) => {
  const flags = new Set(snippets.flatMap((s) => s.args))
  for (const flag of ['--docker', '--containerd', '--podman', '--k3s']) t.ok(flags.has(flag), `a snippet of client-config ${flag}`)
})

t.test('each snippet is what the command prints, and parses', async (t) => {
  const outputs = new Map<string, Promise<string>>()
  for (const s of snippets) {
    const key = s.args.join(' ')
    if (!outputs.has(key)) {
      outputs.set(
        key,
        runCli(['client-config', '--mirror', MIRROR, ...s.args]).then((r) => {
          if (r.code !== 0) throw new Error(`client-config ${key}: exit ${r.code}: ${r.stderr}`)
          return r.stdout
        }),
      )
    }
  }
  for (const s of snippets) {
    const key = s.args.join(' ')
    const out = await outputs.get(key)!
    t.ok(`\n${out}`.includes(`\n${s.text}`), `client-config ${key}: the README's ${s.lang} snippet is in its output, whole lines`)
    const parsed: unknown = s.lang === 'json' ? JSON.parse(s.text) : s.lang === 'toml' ? parseToml(s.text) : parseYaml(s.text)
    t.ok(parsed !== null && typeof parsed === 'object', `client-config ${key}: the snippet parses as ${s.lang}`)
    t.match(JSON.stringify(parsed), 'mirror.example.internal:5000', `client-config ${key}: names the mirror`)
  }
})
