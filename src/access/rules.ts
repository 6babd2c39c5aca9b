import { BlockList, isIP } from 'node:net'
import { addNetwork } from '../cidr.js'
import type { AccessRule } from '../config/access-rules.js'
import { globMatch } from '../config/match.js'

/** Who is asking: an authenticated user, or nobody, and from where. */
export interface Identity {
  user?: string
  address: string
}

export function networksOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList()
  for (const c of cidrs) addNetwork(list, c)
  return list
}

export function inNetworks(list: BlockList, address: string): boolean {
  const family = isIP(address)
  return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4')
}

/**
 * `auth.rules`: the first rule whose pattern matches `UPSTREAM/REPO` decides; a request no rule
 * matches is allowed (to whoever got in). See docs/configuration.md, "Access rules".
 */
export class AccessRules {
  private readonly rules: { rule: AccessRule; networks: BlockList }[]

  constructor(rules: readonly AccessRule[]) {
    this.rules = rules.map((rule) => ({ rule, networks: networksOf(rule.networks) }))
  }

  allows(who: Identity, upstream: string, repo: string): boolean {
    const target = `${upstream}/${repo}`
    const match = this.rules.find(({ rule }) => rule.repositories.some((g) => globMatch(g, target)))
    if (!match) return true
    const { rule, networks } = match
    if (who.user !== undefined && (rule.users.includes(who.user) || rule.users.includes('*'))) return true
    return inNetworks(networks, who.address)
  }
}
