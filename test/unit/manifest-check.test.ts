import t from 'tap'
import { OCI_ARTIFACT_MANIFEST, checkManifest } from '../../src/oci/manifest.js'
import {
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_SCHEMA1_SIGNED,
  MAX_MANIFEST_SIZE,
  OCI_INDEX,
  OCI_MANIFEST,
} from '../../src/oci/media-types.js'

const D = `sha256:${'a'.repeat(64)}`
const desc = (mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip') => ({ mediaType, digest: D, size: 10 })
const buf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v))
const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc('application/vnd.oci.image.config.v1+json'), layers: [desc()] }
const index = {
  schemaVersion: 2,
  mediaType: OCI_INDEX,
  manifests: [{ ...desc(OCI_MANIFEST), platform: { os: 'linux', architecture: 'amd64' } }],
}

t.test('manifests of every kind are recognised, with the type the body or its declaration gives', async (t) => {
  const ok = (body: Buffer, declared?: string) => {
    const r = checkManifest(body, declared)
    return r.ok ? r.mediaType : `not: ${r.reason}`
  }
  t.equal(ok(buf(manifest)), OCI_MANIFEST)
  t.equal(ok(buf({ ...manifest, mediaType: DOCKER_MANIFEST })), DOCKER_MANIFEST)
  t.equal(ok(buf(index)), OCI_INDEX)
  t.equal(ok(buf({ ...index, mediaType: DOCKER_LIST })), DOCKER_LIST)
  const { mediaType: _m, ...bare } = manifest
  t.equal(ok(buf(bare)), OCI_MANIFEST, 'an OCI manifest without mediaType, by its shape')
  t.equal(ok(buf(bare), `${OCI_MANIFEST}; charset=utf-8`), OCI_MANIFEST, 'or by its Content-Type')
  const { mediaType: _i, ...bareIndex } = index
  t.equal(ok(buf(bareIndex), 'application/json'), OCI_INDEX, 'generic JSON says nothing: the shape decides')
  t.equal(
    ok(buf({ ...manifest, artifactType: 'application/vnd.dev.cosign.simplesigning.v1+json', subject: desc(OCI_MANIFEST) })),
    OCI_MANIFEST,
    'an OCI 1.1 artifact',
  )
  t.equal(ok(buf({ mediaType: OCI_ARTIFACT_MANIFEST, artifactType: 'application/x', blobs: [desc()] })), OCI_ARTIFACT_MANIFEST)
  t.equal(ok(buf({ schemaVersion: 1, name: 'a', tag: 'b', fsLayers: [], signatures: [] })), DOCKER_SCHEMA1_SIGNED)
  t.equal(ok(buf(`  \n${JSON.stringify(manifest)}`)), OCI_MANIFEST, 'leading whitespace')
})

t.test('what is not a manifest is refused, with the reason', async (t) => {
  const not = (body: Buffer, declared?: string) => {
    const r = checkManifest(body, declared)
    return r.ok ? `accepted as ${r.mediaType}` : r.reason
  }
  t.equal(not(Buffer.alloc(0)), 'empty body')
  t.equal(not(buf('<html>Welcome to nginx!</html>'), 'text/html'), 'not a JSON object')
  t.equal(not(Buffer.from([0x1f, 0x8b, 8, 0])), 'not a JSON object', 'a gzip layer')
  t.equal(not(buf('{"a":'), OCI_MANIFEST), 'not valid JSON')
  t.equal(not(buf('[1,2]'), OCI_MANIFEST), 'not a JSON object')
  t.equal(not(buf({ hello: 'world' }), 'application/json'), 'no manifest media type')
  t.equal(
    not(buf({ hello: 'world' }), 'text/html'),
    'text/html is not a manifest media type',
    'a declared type that is not a manifest type',
  )
  // An image config has a `config` object: the old shape guess took it for a manifest.
  const config = { architecture: 'amd64', os: 'linux', config: { Env: [] }, rootfs: { type: 'layers', diff_ids: [D] } }
  t.equal(not(buf(config)), 'no manifest media type')
  t.equal(not(buf(config), OCI_MANIFEST), 'schemaVersion is not 2')
  t.equal(not(buf({ ...manifest, config: { ...desc(), digest: '../../etc' } })), 'config is not a descriptor')
  t.equal(not(buf({ ...manifest, layers: [{ ...desc(), size: -1 }] })), 'layers is not a list of descriptors')
  t.equal(not(buf({ ...manifest, layers: [{ ...desc(), mediaType: 'no slash' }] })), 'layers is not a list of descriptors')
  t.equal(not(buf({ ...index, manifests: [{ digest: D }] })), 'manifests is not a list of descriptors')
  t.equal(not(buf({ ...manifest, subject: 'x' })), 'subject is not a descriptor')
  t.equal(not(buf({ ...manifest, mediaType: 42 })), 'mediaType is not a string')
  t.equal(not(buf({ mediaType: OCI_ARTIFACT_MANIFEST })), 'artifactType is missing')
  t.equal(not(Buffer.concat([buf('{"a":"'), Buffer.alloc(MAX_MANIFEST_SIZE, 'a'), buf('"}')])), 'larger than a manifest may be')
})
