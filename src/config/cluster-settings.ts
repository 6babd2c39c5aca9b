/**
 * The settings of replicas that share blobs (cluster/): declared here to keep settings.ts readable, spread
 * into SETTINGS at their place in its order, and otherwise like every other setting there.
 */
import { setting } from './declare.js'
import * as v from './values.js'

export const CLUSTER_SETTINGS = {
  'cluster.peers': setting(v.listOf(v.httpUrl, { unique: true }), {
    default: [],
    env: 'REGMIRROR_PEERS',
    flag: 'peer',
    arg: 'URL',
    append: true,
    help: 'another replica (base URL; a host name that resolves to several addresses is one peer each)',
    doc:
      'the replicas that share blobs: each digest has one owner among them (rendezvous hashing), a miss elsewhere streams from it, ' +
      'and only the owner fetches from upstream. Base URLs (`http://10.0.0.5:5000`); a host name resolving to several addresses ' +
      '(a Kubernetes headless Service) is one peer per address, resolved again every `cluster.resolveInterval`. Needs ' +
      '`cluster.self` and `cluster.secret`; see [Replicas](#replicas)',
  }),
  'cluster.self': setting(v.httpUrl, {
    optional: true,
    docDefault: 'none',
    env: 'REGMIRROR_SELF',
    flag: 'self',
    arg: 'URL',
    help: "this replica's own base URL as its peers reach it",
    doc: "this replica's base URL as the peers list names it (`http://$(POD_IP):5000`): the share of digests it owns",
  }),
  'cluster.secret': setting(v.secret, {
    optional: true,
    docDefault: 'none',
    env: 'REGMIRROR_CLUSTER_SECRET',
    doc: 'shared by the replicas, at least 16 characters: every peer request is signed with it (HMAC-SHA256, valid for a minute); requests without a valid signature never reach the peer route',
  }),
  'cluster.resolveInterval': setting(v.duration, { default: '15s', doc: 'how often peer host names are resolved again' }),
} as const
