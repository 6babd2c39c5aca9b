/**
 * Gate for e2e tests that need real programs. Present → true. Missing → with CI=true the test fails (a missing
 * program in CI is a broken CI image, not a reason to go green); elsewhere the test is skipped, loudly.
 */
import { accessSync, constants, existsSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import type { TestContext } from './test-context.js'

/** The Debian package that provides each program the e2e tests use. */
export const DEBIAN_PACKAGE_OF: Readonly<Record<string, string>> = {
  'docker-registry': 'docker-registry',
  skopeo: 'skopeo',
  containerd: 'containerd',
  ctr: 'containerd',
  'redis-server': 'redis-server',
  'redis-cli': 'redis-tools',
  openssl: 'openssl',
  dockerd: 'docker.io',
  docker: 'docker.io',
  tar: 'tar',
  curl: 'curl',
  h2load: 'nghttp2-client',
  htpasswd: 'apache2-utils',
  nginx: 'nginx-light',
  squid: 'squid',
  tinyproxy: 'tinyproxy',
  danted: 'dante-server',
  podman: 'podman',
  chromium: 'chromium',
  go: 'golang-go',
  busybox: 'busybox',
  debootstrap: 'debootstrap',
  radosgw: 'radosgw',
  'ceph-mon': 'ceph-mon',
  'ceph-osd': 'ceph-osd',
  ceph: 'ceph-common',
  'radosgw-admin': 'ceph-common',
  'ceph-authtool': 'ceph-common',
  monmaptool: 'ceph-base',
}

/**
 * Go source libraries the tests build against (GOPATH mode, from Debian's /usr/share/gocode), by the directory
 * that proves them installed: the chart's renderer (test/helm/render) needs sprig and yaml.v3 (Debian installs
 * yaml.v3 with sprig's package, through testify; .ci/run names it all the same).
 */
export const GO_LIBRARY_PACKAGE_OF: Readonly<Record<string, string>> = {
  '/usr/share/gocode/src/github.com/Masterminds/sprig': 'golang-github-masterminds-sprig-dev',
  '/usr/share/gocode/src/gopkg.in/yaml.v3': 'golang-gopkg-yaml.v3-dev',
}

/** Absolute path of `name` on PATH, or undefined. */
export function findProgram(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

export function requirePrograms(t: TestContext, names: readonly string[]): boolean {
  const missing = names.filter((name) => findProgram(name) === undefined)
  if (missing.length === 0) return true
  const packages = [...new Set(missing.map((name) => DEBIAN_PACKAGE_OF[name] ?? name))]
  const what = missing.map((name) => `${name} (Debian package: ${DEBIAN_PACKAGE_OF[name] ?? 'unknown'})`).join(', ')
  return missingPrerequisites(t, what, packages, 'required program(s)', missing.join(', '))
}

/** Like requirePrograms, for the Go source libraries of GO_LIBRARY_PACKAGE_OF (and the go program). */
export function requireGoLibraries(t: TestContext): boolean {
  if (!requirePrograms(t, ['go'])) return false
  const missing = Object.keys(GO_LIBRARY_PACKAGE_OF).filter((dir) => !existsSync(dir))
  if (missing.length === 0) return true
  const packages = missing.map((dir) => GO_LIBRARY_PACKAGE_OF[dir]!)
  return missingPrerequisites(t, packages.join(', '), packages, 'required Go librar(ies)', packages.join(', '))
}

/** With CI=true a failure; elsewhere a loud skip (plan 0). Returns false. */
function missingPrerequisites(t: TestContext, what: string, packages: string[], kind: string, short: string): boolean {
  const install = `apt-get install -y ${packages.join(' ')}`
  if (process.env.CI === 'true') {
    t.fail(`e2e: ${kind} missing: ${what}. CI=true, so this is a failure. Install with: ${install}`)
    return false
  }
  const banner = [
    '',
    '*'.repeat(78),
    `*  E2E TEST SKIPPED: missing ${what}`,
    `*  Install with: ${install}   (with CI=true this is a failure)`,
    '*'.repeat(78),
    '',
  ].join('\n')
  console.error(banner)
  t.plan(0, `missing ${short} (${install})`)
  return false
}
