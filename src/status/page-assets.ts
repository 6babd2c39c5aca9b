import { createHash } from 'node:crypto'

/**
 * The status page's style and script, inline so the page is one answer with no build step. They
 * are allowed by their hashes in the Content-Security-Policy, and nothing else is: no other script,
 * no style attribute, no image, no frame, requests only to this origin.
 */

// Narrow screens: tables become one card per row, each cell headed by its data-label.
export const PAGE_STYLE = `
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.4}
body{margin:0 auto;max-width:72rem;padding:.75rem}
h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
header p,footer{color:GrayText;font-size:.9rem}
td{overflow-wrap:break-word}code{overflow-wrap:anywhere}
small{display:block;color:GrayText;font-size:.8rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid color-mix(in srgb,CanvasText 15%,transparent);vertical-align:top}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.5rem;margin:0}
.card{border:1px solid color-mix(in srgb,CanvasText 15%,transparent);border-radius:.4rem;padding:.5rem .75rem}
.card dt{font-size:.8rem;text-transform:uppercase;color:GrayText}.card dd{margin:0;font-size:1.1rem}
meter,progress{width:100%;max-width:14rem}
.on{color:#1a7f37}.off{color:#cf222e;font-weight:600}.empty{color:GrayText}
@media (max-width:40rem){
thead{display:none}table,tbody,tr,td{display:block}
tr{border:1px solid color-mix(in srgb,CanvasText 15%,transparent);border-radius:.4rem;margin-bottom:.5rem;padding:.25rem}
td{border:0;padding:.15rem .4rem}td::before{content:attr(data-label);display:block;font-size:.75rem;color:GrayText}
}
`

// The same sections as page.ts renders, built with DOM calls: values only ever become text nodes.
export const PAGE_SCRIPT = `
(() => {
  'use strict'
  const EVERY_MS = 5000
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  const bytes = (n) => {
    let i = 0
    while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++ }
    return (i === 0 ? Math.round(n) : n.toFixed(1)) + ' ' + UNITS[i]
  }
  const duration = (s) =>
    s < 60 ? s + ' s' : s < 3600 ? Math.floor(s / 60) + ' min' : s < 86400
      ? Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min'
      : Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h'
  const ago = (ms) => duration(Math.max(0, Math.round(ms / 1000))) + ' ago'
  const h = (tag, attrs, ...kids) => {
    const e = document.createElement(tag)
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v))
    for (const k of kids.flat()) if (k !== null && k !== undefined && k !== '') e.append(k instanceof Node ? k : String(k))
    return e
  }
  const small = (t) => h('small', null, t)
  const digest = (d) => h('code', { title: d }, d.replace(/^sha256:/, '').slice(0, 12))
  const when = (iso, now) => h('time', { datetime: iso, title: iso }, ago(now - Date.parse(iso)))
  const table = (head, rows, empty) => rows.length === 0 ? h('p', { class: 'empty' }, empty) : h('table', null,
    h('thead', null, h('tr', null, head.map((x) => h('th', null, x)))),
    h('tbody', null, rows.map((r) => h('tr', null, r.map((c, i) => h('td', { 'data-label': head[i] }, c))))))
  const section = (title, body) => h('section', null, h('h2', null, title), body)

  const cache = (c) => {
    const ratio = c.hitRatio === null ? '–' : (c.hitRatio * 100).toFixed(1) + ' %'
    const card = (k, v, more) => h('div', { class: 'card', 'data-k': k }, h('dt', null, k), h('dd', null, v, h('small', null, more)))
    return h('dl', { class: 'cards' },
      card('used', bytes(c.usedBytes) + ' of ' + bytes(c.maxBytes), h('meter', { min: 0, max: c.maxBytes, value: c.usedBytes })),
      card('entries', c.entries + ' blobs and manifests', bytes(c.pinnedBytes) + ' pinned'),
      card('hit ratio', ratio, c.hits + ' hits, ' + c.misses + ' misses'),
      card('bandwidth saved', bytes(c.savedBytes),
        bytes(c.servedFromCacheBytes) + ' served from cache, ' + bytes(c.fetchedBytes) + ' fetched from upstreams'))
  }
  const upstreams = (s, now) => table(['Upstream', 'State', 'Rate limit left', 'Last error'], s.upstreams.map((u) => [
    [u.name, small(u.host)],
    u.offlineByConfig ? h('span', { class: 'off' }, 'offline (configured)') : u.online ? h('span', { class: 'on' }, 'online') : h('span', { class: 'off' }, 'offline'),
    u.ratelimitRemaining === null ? '–' : u.ratelimitRemaining,
    u.lastError ? [h('code', null, u.lastError.code), ' ' + u.lastError.message, h('small', null, when(u.lastError.at, now))] : 'none',
  ]), 'No upstreams.')
  const downloads = (s) => table(['Repository', 'Digest', 'Progress', 'Rate', 'Clients'], s.downloads.map((d) => {
    const pct = d.size ? ' (' + Math.floor((d.received * 100) / d.size) + ' %)' : ''
    const bar = d.size ? h('progress', { max: d.size, value: d.received }) : h('progress')
    return [
      d.repository === null ? '–' : d.upstream + '/' + d.repository,
      digest(d.digest),
      [bar, small(bytes(d.received) + ' of ' + (d.size === null ? '?' : bytes(d.size)) + pct)],
      bytes(d.bytesPerSecond) + '/s',
      d.clients,
    ]
  }), 'Nothing is being downloaded.')
  const recent = (s, now) => table(['Image', 'Digest', 'Size', 'When'], s.recentPulls.map((p) => [
    [p.upstream + '/' + p.repository + (p.tag === undefined ? '' : ':' + p.tag), p.platform ? small(p.platform) : null],
    digest(p.digest),
    p.size === undefined ? '–' : bytes(p.size),
    when(p.at, now),
  ]), 'Nothing pulled since the mirror started.')
  const top = (s, now) => table(['Repository', 'Pulls', 'Last pulled'],
    s.topRepositories.map((r) => [r.upstream + '/' + r.repository, r.pulls, when(r.lastAt, now)]),
    'Nothing pulled since the mirror started.')
  const pins = (s) => table(['Pin', 'From', 'Cached', 'Root digest'], s.pins.map((p) => [
    p.ref,
    p.origin === 'config' ? 'configuration' : 'data directory',
    p.cached + ' entries, ' + bytes(p.bytes),
    p.root === undefined ? 'not resolved yet' : digest(p.root),
  ]), 'No pins.')

  const render = (s) => {
    const now = Date.parse(s.now)
    document.getElementById('summary').textContent = 'version ' + s.version + ' · up ' + duration(s.uptimeSeconds) + ' · ' + s.state
    document.getElementById('status').replaceChildren(
      section('Cache', cache(s.cache)), section('Upstreams', upstreams(s, now)), section('Downloads in progress', downloads(s)),
      section('Recently pulled', recent(s, now)), section('Most pulled repositories', top(s, now)), section('Pins', pins(s)))
    document.getElementById('refreshed').textContent = 'Updated ' + s.now.replace('T', ' ').replace(/\\.\\d+Z$/, ' UTC') + '.'
  }
  const refresh = async () => {
    if (!document.hidden) {
      try {
        const res = await fetch('/api/status', { headers: { accept: 'application/json' }, cache: 'no-store' })
        if (!res.ok) throw new Error('HTTP ' + res.status)
        render(await res.json())
      } catch (err) {
        document.getElementById('refreshed').textContent = 'Not refreshed: ' + err.message + '; trying again.'
      }
    }
    setTimeout(refresh, EVERY_MS)
  }
  setTimeout(refresh, EVERY_MS)
})()
`

const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`

/** Nothing but this page's own style and script, and requests back to this origin. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${hash(PAGE_SCRIPT)}`,
  `style-src ${hash(PAGE_STYLE)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')
