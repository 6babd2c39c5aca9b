/**
 * A test certificate authority and server certificates signed by it, made with the openssl program (EC P-256,
 * a day's validity), for the TLS listener: clients trust `caCert` the way they would trust a site's own CA.
 */
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TestCa {
  dir: string
  caCert: string
  caKey: string
}

export async function makeCa(dir: string, name = 'regmirror test CA'): Promise<TestCa> {
  const caKey = join(dir, 'ca.key')
  const caCert = join(dir, 'ca.pem')
  await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey])
  await run('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    caKey,
    '-out',
    caCert,
    '-days',
    '1',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ])
  return { dir, caCert, caKey }
}

/** A server certificate for `hosts` (names and IP addresses) signed by `ca`; `label` keeps several apart. */
export async function makeServerCert(
  ca: TestCa,
  label: string,
  hosts: string[] = ['127.0.0.1', 'localhost'],
): Promise<{ cert: string; key: string }> {
  const key = join(ca.dir, `${label}.key`)
  const csr = join(ca.dir, `${label}.csr`)
  const cert = join(ca.dir, `${label}.pem`)
  const ext = join(ca.dir, `${label}.ext`)
  const san = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',')
  await writeFile(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`)
  await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key])
  await run('openssl', ['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${label}`])
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.caCert,
    '-CAkey',
    ca.caKey,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '1',
    '-extfile',
    ext,
  ])
  return { cert, key }
}
