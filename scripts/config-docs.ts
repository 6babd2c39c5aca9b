// `npm run docs`: rewrites the generated tables of docs/configuration.md from the settings' declarations.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { updateConfigDocs } from '../src/config/docs.js'

const file = fileURLToPath(new URL('../docs/configuration.md', import.meta.url))
const text = readFileSync(file, 'utf8')
const updated = updateConfigDocs(text)
if (updated === text) console.log('docs/configuration.md: up to date')
else {
  writeFileSync(file, updated)
  console.log('docs/configuration.md: tables rewritten')
}
