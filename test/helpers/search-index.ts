/**
 * A stand-in for Docker Hub's search index (`index.docker.io/v1/search`): a real HTTP server on 127.0.0.1 port 0
 * answering Docker's v1 search API from a list of repositories (substring match, `n` and `page`), recording every
 * request. `hostile` makes it answer an endless body, `close()` takes it away (the mirror must then answer locally).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface IndexEntry {
  name: string
  description?: string
  stars?: number
  official?: boolean
}

export interface SearchIndex {
  url: string
  /** `q` of every search asked, in order. */
  readonly searches: string[]
  /** 'ok' answers; 'endless' streams JSON that never ends within any bound; 'garbage' answers non-JSON; 'error' 500. */
  mode: 'ok' | 'endless' | 'garbage' | 'error'
  close(): Promise<void>
}

export async function startSearchIndex(entries: IndexEntry[]): Promise<SearchIndex> {
  const searches: string[] = []
  const state = { mode: 'ok' as SearchIndex['mode'] }
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    if (u.pathname === '/v1/_ping') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      return
    }
    if (u.pathname !== '/v1/search') {
      res.writeHead(404).end()
      return
    }
    const q = u.searchParams.get('q') ?? ''
    searches.push(q)
    if (state.mode === 'error') return void res.writeHead(500).end('oops')
    if (state.mode === 'garbage') return void res.writeHead(200, { 'content-type': 'application/json' }).end('<html>nope</html>')
    if (state.mode === 'endless') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"results":[')
      const chunk = `{"name":"x","description":"${'y'.repeat(8000)}"},`
      const pump = () => {
        while (res.write(chunk)) if (res.destroyed) return
        res.once('drain', pump)
      }
      pump()
      res.on('close', () => res.removeAllListeners('drain'))
      return
    }
    const n = Number(u.searchParams.get('n') ?? 25)
    const page = Number(u.searchParams.get('page') ?? 1)
    const hits = entries.filter((e) => e.name.includes(q))
    const results = hits.slice((page - 1) * n, page * n).map((e) => ({
      name: e.name,
      description: e.description ?? '',
      star_count: e.stars ?? 0,
      is_official: e.official ?? false,
      is_automated: false,
      // Fields the mirror must not pass on.
      tracking: 'secret-cookie',
    }))
    const body = JSON.stringify({ num_pages: Math.ceil(hits.length / n), num_results: hits.length, page, page_size: n, query: q, results })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  let closed: Promise<void> | undefined
  return {
    url: `http://127.0.0.1:${port}`,
    searches,
    get mode() {
      return state.mode
    },
    set mode(m) {
      state.mode = m
    },
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })),
  }
}
