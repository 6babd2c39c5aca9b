// A fake Docker-Hub-like registry for integration tests: three real HTTP servers on 127.0.0.1 port 0
// (the registry, a token realm "auth" server, and a "CDN" that blob GETs redirect to), all content in memory,
// every request recorded, and fault switches (status, slow, stall, drop, truncate, extra, wrongBytes, redirects, delays).
// One file per concern: content.ts, token-realm.ts, registry-routes.ts, cdn.ts, faults.ts and fault-effects.ts,
// reply.ts (what routes answer), server.ts (plumbing), start.ts (wiring); this file is the public API.
export { startFakeRegistry, type FakeRegistry, type FakeRegistryOptions } from './start.js'
export type { Fault, RequestMatch } from './faults.js'
export type { RecordedRequest, ServerName } from './server.js'
export { sha256, buildImage, MediaTypes } from '../oci-fixtures.js'
export type { FakeImage, FakeBlob, FakeManifest, ImageOptions, Platform } from '../oci-fixtures.js'
