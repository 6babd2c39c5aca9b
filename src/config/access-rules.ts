import { z } from 'zod'
import type { ValueType } from './values.js'
import * as v from './values.js'

/**
 * One access rule: `repositories` are globs (match.ts) over `UPSTREAM/REPO` (`registry.internal/team-a/**`,
 * `docker.io/library/*`). The first rule whose pattern matches a request decides it: allowed when the
 * authenticated user is in `users` (`*`: any authenticated user) or the client's address is in `networks`.
 * A request no rule matches is allowed to anyone who got in (authenticated, or from an anonymous network).
 */
export interface AccessRule {
  repositories: string[]
  users: string[]
  networks: string[]
}

export const accessRule: ValueType<AccessRule> = {
  doc: '`{repositories, users, networks}`',
  plural: '`{repositories, users, networks}`',
  schema: (sc) =>
    z
      .strictObject({
        repositories: z.array(v.glob.schema(sc)).min(1, { error: 'must name at least one pattern' }),
        users: z.array(v.string.schema(sc)).optional(),
        networks: z.array(v.network.schema(sc)).optional(),
      })
      .transform((r) => ({ repositories: r.repositories, users: r.users ?? [], networks: r.networks ?? [] })),
  format: (r) => ({
    repositories: r.repositories,
    ...(r.users.length ? { users: r.users } : {}),
    ...(r.networks.length ? { networks: r.networks } : {}),
  }),
}
