import { isIP, type BlockList } from 'node:net'

/** Parses `10.0.0.0/8`, `fd00::/8` or a single address into a BlockList entry; throws Error(message). */
export function addNetwork(list: BlockList, cidr: string): void {
  const [addr = '', bits, extra] = cidr.trim().split('/')
  const family = isIP(addr)
  if (family === 0 || extra !== undefined) throw new Error(`not an IP network (CIDR): ${JSON.stringify(cidr)}`)
  const max = family === 4 ? 32 : 128
  const prefix = bits === undefined ? max : Number(bits)
  if (!/^\d{1,3}$/.test(bits ?? String(max)) || prefix > max) throw new Error(`not an IP network (CIDR): ${JSON.stringify(cidr)}`)
  list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6')
}
