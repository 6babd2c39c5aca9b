// Lint rules for the whole tree. Formatting is prettier's (npm run format); these rules are about
// correctness and size, and the layer rules keep each folder to what docs/architecture.md says it
// may import.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/** Files in `files` may not import from the folders named in `banned` (relative imports, any depth). */
const layer = (files, banned, why) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', { patterns: [{ group: banned.flatMap((b) => [`**/${b}`, `**/${b}/**`]), message: why }] }],
  },
})

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tap/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // A newcomer reads a file in one sitting; a longer one says why next to it.
      'max-lines': ['error', { max: 300, skipBlankLines: true, skipComments: true }],
      'max-lines-per-function': ['error', { max: 60, skipBlankLines: true, skipComments: true }],
    },
  },
  layer(
    [
      'src/errors.ts',
      'src/log.ts',
      'src/metrics.ts',
      'src/single-flight.ts',
      'src/cidr.ts',
      'src/file-watch.ts',
      'src/format.ts',
      'src/oci/**',
    ],
    [
      'config',
      'kv.js',
      'cache',
      'upstream',
      'proxy',
      'http',
      'app.js',
      'app-types.js',
      'airgap',
      'commands',
      'cluster',
      'workers',
      'storage',
    ],
    'the foundation (errors, log, metrics, oci grammar) imports nothing above it',
  ),
  layer(
    ['src/config/**'],
    ['kv.js', 'cache', 'upstream', 'proxy', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'cluster', 'workers', 'storage'],
    'config is read by everything and reads only the foundation',
  ),
  layer(
    ['src/kv.ts'],
    ['config', 'cache', 'upstream', 'proxy', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'cluster', 'workers', 'storage'],
    'the key-value store knows no caller',
  ),
  layer(
    ['src/cache/**'],
    ['upstream', 'proxy', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'cluster', 'workers', 'storage'],
    'cache/ persists; it never talks to upstreams or clients',
  ),
  layer(
    ['src/upstream/**'],
    ['cache', 'proxy', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'cluster', 'workers', 'storage'],
    'upstream/ talks to registries; it keeps nothing on disk',
  ),
  layer(
    ['src/proxy/**'],
    ['access', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'workers'],
    'services decide local vs upstream; they know nothing of HTTP requests',
  ),
  layer(
    ['src/access/**'],
    ['proxy', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'cluster', 'workers'],
    'access is decided before the services, from config, cache and upstream',
  ),
  layer(
    ['src/http/**'],
    ['cache', 'upstream', 'storage', 'app.js', 'airgap', 'commands', 'workers'],
    'handlers are HTTP glue over the services (app-types.ts)',
  ),
  layer(
    ['src/cluster/**'],
    ['cache', 'upstream', 'proxy', 'access', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'workers', 'storage'],
    'cluster/ knows the other replicas; the services decide what to ask them',
  ),
  layer(
    ['src/status/**'],
    ['access', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'cluster', 'workers'],
    'status/ reads the parts for the status page; who may see it is decided in http/',
  ),
  layer(
    ['src/storage/**'],
    [
      'cache',
      'upstream',
      'proxy',
      'access',
      'http',
      'app.js',
      'app-types.js',
      'airgap',
      'commands',
      'cluster',
      'status',
      'clients',
      'workers',
    ],
    'storage/ is the object store and its health; the services decide what goes there',
  ),
  layer(
    ['src/airgap/**'],
    ['http', 'commands', 'workers'],
    'the air-gap tools work on the services and the data directory, not on HTTP requests',
  ),
  layer(
    ['src/clients/**'],
    ['kv.js', 'cache', 'upstream', 'proxy', 'access', 'http', 'app.js', 'app-types.js', 'airgap', 'commands', 'cluster', 'workers'],
    "clients/ writes other programs' configuration from the resolved config, and reads nothing else",
  ),
  layer(
    ['src/workers/**'],
    ['upstream', 'access', 'http', 'airgap', 'commands', 'cluster', 'status', 'storage'],
    'workers/ shares the cache between processes: it builds the app (app.ts) and wraps the cache, never requests or upstreams',
  ),
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
)
