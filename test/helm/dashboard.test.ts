/**
 * The Grafana dashboard the chart ships (helm/regmirror/dashboards/regmirror.json) against what the mirror really
 * exports: every metric its queries name must be in `/metrics` of a running mirror, and every label they match on or
 * group by must be one of that metric's labels. The mirror runs in-process against the fake registry and serves a
 * pull first, so the labelled families have samples; a family without samples yet still shows its `# HELP` line.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startFakeRegistry } from '../helpers/fake-registry/index.js'
import { CHART_DIR } from '../helpers/helm.js'
import { get, startMirror } from '../helpers/mirror.js'
import { MANIFEST_ACCEPT } from '../../src/oci/media-types.js'

/** Series Prometheus makes itself for every target, and the labels it adds to every series. */
const PROMETHEUS_SERIES = new Set(['up'])
const TARGET_LABELS = new Set(['job', 'instance'])
const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset'])

interface Query {
  where: string
  expr: string
}

/** Every PromQL text of the dashboard: panel targets (rows' panels too) and query variables. */
function queries(dashboard: Record<string, unknown>): Query[] {
  const out: Query[] = []
  const panels = (list: unknown): void => {
    for (const p of (list ?? []) as { title?: string; targets?: { expr?: string }[]; panels?: unknown }[]) {
      for (const target of p.targets ?? []) if (target.expr) out.push({ where: `panel "${p.title}"`, expr: target.expr })
      panels(p.panels)
    }
  }
  panels(dashboard.panels)
  const variables = ((dashboard.templating as { list?: unknown[] } | undefined)?.list ?? []) as {
    name: string
    type: string
    query?: string | { query?: string }
  }[]
  for (const v of variables.filter((x) => x.type === 'query')) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query
    // label_values(METRIC, LABEL): the metric is PromQL, the label one of its labels.
    const m = q === undefined ? null : /^label_values\((.+),\s*([a-zA-Z_]\w*)\)$/.exec(q)
    if (m) out.push({ where: `variable $${v.name}`, expr: `sum by (${m[2]}) (${m[1]})` })
  }
  return out
}

/** Metric names, label matchers by metric, and grouping labels of one expression. */
function parse(expr: string): { metrics: Set<string>; matchers: Map<string, string[]>; groupBy: string[] } {
  const matchers = new Map<string, string[]>()
  const groupBy: string[] = []
  let rest = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""') // string contents are values, never names
  rest = rest.replace(/([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}/g, (_m, name: string | undefined, body: string) => {
    const labels = [...body.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!)
    if (name !== undefined) matchers.set(name, [...(matchers.get(name) ?? []), ...labels])
    return ` ${name ?? ''} `
  })
  rest = rest.replace(/\b(?:by|without)\s*\(([^)]*)\)/g, (_m, labels: string) => {
    groupBy.push(
      ...labels
        .split(',')
        .map((l) => l.trim())
        .filter((l) => l !== ''),
    )
    return ' '
  })
  rest = rest.replace(/\[[^\]]*\]/g, ' ') // range selectors: [$__rate_interval], [5m]
  const metrics = new Set<string>()
  for (const m of rest.matchAll(/(?<![\w$:])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const [, word, call] = m
    if (call !== undefined || PROMQL_WORDS.has(word!) || /^\d/.test(word!)) continue // functions, aggregations, keywords
    metrics.add(word!)
  }
  return { metrics, matchers, groupBy }
}

/** What /metrics shows: family names from `# HELP` lines, and sample names with their label names. */
function exposition(text: string): { families: Set<string>; samples: Map<string, Set<string>> } {
  const families = new Set<string>()
  const samples = new Map<string, Set<string>>()
  for (const line of text.split('\n')) {
    const help = /^# HELP ([a-zA-Z_:][\w:]*) /.exec(line)
    if (help) families.add(help[1]!)
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line)
    if (sample) {
      const labels = samples.get(sample[1]!) ?? new Set<string>()
      for (const l of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="/g)) labels.add(l[1]!)
      samples.set(sample[1]!, labels)
    }
  }
  return { families, samples }
}

t.test("every metric and label the dashboard's queries name is one the mirror exports", async (t) => {
  const fake = await startFakeRegistry({ rateLimit: { limit: 100, remaining: 99 } })
  t.teardown(() => fake.close())
  const image = fake.addImage('library/alpine', '3.20')
  const mirror = await startMirror(t, { upstreams: [{ name: 'docker.io', url: fake.url }] })
  // A pull, then the same again: misses and hits, upstream requests, bytes from upstream and from the cache.
  for (let i = 0; i < 2; i++) {
    t.equal((await get(`${mirror.url}/v2/library/alpine/manifests/3.20`, { accept: MANIFEST_ACCEPT })).status, 200)
    for (const b of image.blobs) t.equal((await get(`${mirror.url}/v2/library/alpine/blobs/${b.digest}`)).status, 200)
  }
  const { families, samples } = exposition((await get(`${mirror.url}/metrics`)).body.toString('utf8'))
  t.ok(samples.has('regmirror_requests_total'), 'the pull shows in /metrics')

  // The labels a family declares, for families that have no sample yet (refusals, failures, peers).
  const declared = new Map(
    mirror.app.services.metrics.registry
      .getMetricsAsArray()
      .map((m) => [m.name, (m as unknown as { labelNames?: readonly string[] }).labelNames ?? []] as const),
  )
  const familyOf = (name: string): string => name.replace(/_(bucket|sum|count)$/, '')
  const labelsOf = (name: string): Set<string> => {
    const out = new Set([...(samples.get(name) ?? []), ...(declared.get(familyOf(name)) ?? [])])
    if (name.endsWith('_bucket')) out.add('le')
    return out
  }

  const dashboard = JSON.parse(readFileSync(join(CHART_DIR, 'dashboards/regmirror.json'), 'utf8')) as Record<string, unknown>
  const all = queries(dashboard)
  t.ok(all.length >= 20, `${all.length} queries in the dashboard`)
  const named = new Set<string>()
  const problems: string[] = []
  for (const q of all) {
    const { metrics, matchers, groupBy } = parse(q.expr)
    if (metrics.size === 0) problems.push(`${q.where}: no metric found in ${q.expr}`)
    for (const name of metrics) {
      named.add(name)
      if (PROMETHEUS_SERIES.has(name)) continue
      if (!families.has(name) && !samples.has(name) && !families.has(familyOf(name))) {
        problems.push(`${q.where}: ${name} is not in /metrics`)
      }
    }
    for (const [name, labels] of matchers) {
      for (const l of labels) {
        if (!TARGET_LABELS.has(l) && !labelsOf(name).has(l)) problems.push(`${q.where}: ${name} has no label ${l}`)
      }
    }
    for (const l of groupBy) {
      const known = TARGET_LABELS.has(l) || [...metrics].some((m) => labelsOf(m).has(l))
      if (!known) problems.push(`${q.where}: grouped by ${l}, which none of ${[...metrics].join(', ')} has`)
    }
  }
  t.same(problems, [], 'every name the queries use exists')
  // What issue #13 asks the dashboard to show.
  for (const name of [
    'regmirror_requests_total',
    'regmirror_served_bytes_total',
    'regmirror_upstream_requests_total',
    'regmirror_upstream_ratelimit_remaining',
    'regmirror_fills_in_progress',
    'regmirror_cache_size_bytes',
    'regmirror_cache_max_size_bytes',
    'regmirror_cache_evictions_total',
    'regmirror_cluster_peers',
    'up',
  ]) {
    t.ok(named.has(name), `the dashboard shows ${name}`)
  }
})

t.test('the query parser finds names, matchers and grouping labels (so the test above can fail)', async (t) => {
  const p = parse('sum by (upstream, status) (rate(regmirror_x_total{job=~"$job",status=~"5..|a{b}"}[$__rate_interval])) / count(up)')
  t.same([...p.metrics].sort(), ['regmirror_x_total', 'up'])
  t.same(p.matchers.get('regmirror_x_total'), ['job', 'status'])
  t.same(p.groupBy, ['upstream', 'status'])
  const q = parse('histogram_quantile(0.95, sum by (le) (rate(regmirror_h_seconds_bucket[5m]))) - 1')
  t.same([...q.metrics], ['regmirror_h_seconds_bucket'])
  const { families, samples } = exposition('# HELP regmirror_a_total A.\n# TYPE regmirror_a_total counter\nregmirror_b{x="1",y="2"} 3\n')
  t.same([...families], ['regmirror_a_total'])
  t.same([...(samples.get('regmirror_b') ?? [])], ['x', 'y'])
})
