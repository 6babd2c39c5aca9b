import t from 'tap'
import { MetadataStore } from '../../src/cache/metadata-store.js'
import { createLogger } from '../../src/log.js'
import { metadataConformance } from '../helpers/metadata-conformance.js'

t.test('in-memory metadata store', async (t) => {
  metadataConformance(t, ({ dataDir, prefix }) => MetadataStore.create(dataDir, { prefix }, createLogger('silent')))
})
