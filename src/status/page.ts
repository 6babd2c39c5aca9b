import { PAGE_SCRIPT, PAGE_STYLE } from './page-assets.js'
import type { StatusSnapshot } from './report.js'

/**
 * The status page, rendered here whole so it reads without JavaScript; its inline script
 * (page-assets.ts) then refreshes the same sections from /api/status. Every value from outside
 * (repository names, tags, upstream error messages) goes through `esc`: they come from clients
 * and upstreams.
 */
export function renderPage(s: StatusSnapshot): string {
  const now = Date.parse(s.now)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>regmirror status</title><style>${PAGE_STYLE}</style></head>
<body><header><h1>regmirror</h1><p id="summary">${esc(summary(s))}</p></header>
<main id="status">
${section('Cache', cache(s))}
${section('Upstreams', upstreams(s, now))}
${section('Downloads in progress', downloads(s))}
${section('Recently pulled', recent(s, now))}
${section('Most pulled repositories', top(s, now))}
${section('Pins', pins(s))}
</main>
<footer>The same data as JSON: <a href="/api/status">/api/status</a>. <span id="refreshed">Updated ${esc(clock(s.now))}.</span></footer>
<script>${PAGE_SCRIPT}</script></body></html>
`
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text for HTML content and quoted attribute values. */
export function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ESCAPES[c] as string)
}

function summary(s: StatusSnapshot): string {
  return `version ${s.version} · up ${duration(s.uptimeSeconds)} · ${s.state}`
}

function section(title: string, body: string): string {
  return `<section><h2>${esc(title)}</h2>${body}</section>`
}

function cache(s: StatusSnapshot): string {
  const c = s.cache
  const ratio = c.hitRatio === null ? '–' : `${(c.hitRatio * 100).toFixed(1)} %`
  const cards: [string, string, string][] = [
    ['used', `${bytes(c.usedBytes)} of ${bytes(c.maxBytes)}`, `<meter min="0" max="${c.maxBytes}" value="${c.usedBytes}"></meter>`],
    ['entries', `${c.entries} blobs and manifests`, `${esc(bytes(c.pinnedBytes))} pinned`],
    ['hit ratio', ratio, `${c.hits} hits, ${c.misses} misses`],
    [
      'bandwidth saved',
      bytes(c.savedBytes),
      `${esc(bytes(c.servedFromCacheBytes))} served from cache, ${esc(bytes(c.fetchedBytes))} fetched from upstreams`,
    ],
  ]
  const dl = cards.map(
    ([k, v, more]) => `<div class="card" data-k="${esc(k)}"><dt>${esc(k)}</dt><dd>${esc(v)}<small>${more}</small></dd></div>`,
  )
  return `<dl class="cards">${dl.join('')}</dl>`
}

function upstreams(s: StatusSnapshot, now: number): string {
  return table(
    ['Upstream', 'State', 'Rate limit left', 'Last error'],
    s.upstreams.map((u) => [
      `${esc(u.name)}<small>${esc(u.host)}</small>`,
      u.offlineByConfig
        ? '<span class="off">offline (configured)</span>'
        : u.online
          ? '<span class="on">online</span>'
          : '<span class="off">offline</span>',
      u.ratelimitRemaining === null ? '–' : esc(u.ratelimitRemaining),
      u.lastError ? `<code>${esc(u.lastError.code)}</code> ${esc(u.lastError.message)}<small>${when(u.lastError.at, now)}</small>` : 'none',
    ]),
    'No upstreams.',
  )
}

function downloads(s: StatusSnapshot): string {
  return table(
    ['Repository', 'Digest', 'Progress', 'Rate', 'Clients'],
    s.downloads.map((d) => {
      const pct = d.size ? Math.floor((d.received * 100) / d.size) : undefined
      const bar = d.size ? `<progress max="${d.size}" value="${d.received}"></progress>` : '<progress></progress>'
      const text = `${bytes(d.received)} of ${d.size === null ? '?' : bytes(d.size)}${pct === undefined ? '' : ` (${pct} %)`}`
      return [
        d.repository === null ? '–' : esc(`${d.upstream}/${d.repository}`),
        digest(d.digest),
        `${bar}<small>${esc(text)}</small>`,
        `${esc(bytes(d.bytesPerSecond))}/s`,
        esc(d.clients),
      ]
    }),
    'Nothing is being downloaded.',
  )
}

function recent(s: StatusSnapshot, now: number): string {
  return table(
    ['Image', 'Digest', 'Size', 'When'],
    s.recentPulls.map((p) => [
      `${esc(`${p.upstream}/${p.repository}${p.tag === undefined ? '' : `:${p.tag}`}`)}${p.platform ? `<small>${esc(p.platform)}</small>` : ''}`,
      digest(p.digest),
      p.size === undefined ? '–' : esc(bytes(p.size)),
      when(p.at, now),
    ]),
    'Nothing pulled since the mirror started.',
  )
}

function top(s: StatusSnapshot, now: number): string {
  return table(
    ['Repository', 'Pulls', 'Last pulled'],
    s.topRepositories.map((r) => [esc(`${r.upstream}/${r.repository}`), esc(r.pulls), when(r.lastAt, now)]),
    'Nothing pulled since the mirror started.',
  )
}

function pins(s: StatusSnapshot): string {
  return table(
    ['Pin', 'From', 'Cached', 'Root digest'],
    s.pins.map((p) => [
      esc(p.ref),
      p.origin === 'config' ? 'configuration' : 'data directory',
      esc(`${p.cached} entries, ${bytes(p.bytes)}`),
      p.root === undefined ? 'not resolved yet' : digest(p.root),
    ]),
    'No pins.',
  )
}

/** Cells are HTML already escaped by their makers; `data-label` heads each cell on a phone's width. */
function table(head: string[], rows: string[][], empty: string): string {
  if (rows.length === 0) return `<p class="empty">${esc(empty)}</p>`
  const th = head.map((h) => `<th>${esc(h)}</th>`).join('')
  const tr = rows.map((r) => `<tr>${r.map((c, i) => `<td data-label="${esc(head[i])}">${c}</td>`).join('')}</tr>`).join('')
  return `<table><thead><tr>${th}</tr></thead><tbody>${tr}</tbody></table>`
}

function digest(d: string): string {
  return `<code title="${esc(d)}">${esc(d.replace(/^sha256:/, '').slice(0, 12))}</code>`
}

function when(iso: string, now: number): string {
  return `<time datetime="${esc(iso)}" title="${esc(iso)}">${esc(ago(now - Date.parse(iso)))}</time>`
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`
}

export function ago(ms: number): string {
  return `${duration(Math.max(0, Math.round(ms / 1000)))} ago`
}

export function duration(s: number): string {
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min`
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`
}

function clock(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')
}
