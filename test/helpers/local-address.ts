import { networkInterfaces } from 'node:os'

/**
 * An IPv4 address of this machine that is not loopback, for an upstream that must not be in
 * the loopback range (address-policy tests). undefined on a machine with only loopback.
 */
export function nonLoopbackIPv4(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return undefined
}
