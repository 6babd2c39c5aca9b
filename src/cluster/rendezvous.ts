import { createHash } from 'node:crypto'

/**
 * Rendezvous (highest random weight) hashing: each key goes to the member whose hash of
 * (member, key) is highest. Every replica computes the same owner from the same member list,
 * with no coordination; adding or removing a member moves only the keys it wins or held.
 */
export function ownerOf(key: string, members: readonly string[]): string | undefined {
  let best: string | undefined
  let bestScore = -1n
  for (const m of members) {
    const score = createHash('sha256').update(m).update('\n').update(key).digest().readBigUInt64BE(0)
    if (score > bestScore || (score === bestScore && best !== undefined && m < best)) {
      best = m
      bestScore = score
    }
  }
  return best
}
