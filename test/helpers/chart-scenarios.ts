/**
 * One rendering of the chart with some values, checked the same way in every test: each object against the
 * Kubernetes schema (k8s-schemas.ts), and no secret value anywhere but in a Secret. The objects are kept, so the
 * test file checks all of them for unknown fields in one TypeScript program at its end (`checkUnknownFields`).
 */
import type { Test } from 'tap'
import { render, type K8sObject, type RenderOptions } from './helm.js'
import { schemaProblems, unknownFieldProblems } from './k8s-schemas.js'

export interface Scenarios {
  /** Renders, then asserts every object is valid and that no Secret value leaks out of its Secret. */
  render(t: Test, label: string, opts?: RenderOptions): Promise<K8sObject[]>
  /** One subtest: no rendered object of any scenario so far has a field Kubernetes does not know. */
  checkUnknownFields(t: Test): void
}

export function scenarios(): Scenarios {
  const seen: { label: string; object: K8sObject }[] = []
  return {
    async render(t, label, opts = {}) {
      const objects = await render(opts)
      const problems = objects.flatMap((o) => schemaProblems(o))
      t.same(problems, [], `${label}: every object passes its schema`)
      t.same(leakedSecrets(objects), [], `${label}: no secret value outside a Secret`)
      for (const object of objects) seen.push({ label, object })
      return objects
    },
    checkUnknownFields(t) {
      t.test('no rendered object has a field the Kubernetes schema does not know', async (t) => {
        t.ok(seen.length > 0, `${seen.length} objects rendered`)
        t.same(unknownFieldProblems(seen), [])
      })
    },
  }
}

/**
 * Secret values (6 characters or more, decoded) found in any other object: ConfigMaps, env values, annotations.
 * The chart must reference secrets (secretKeyRef, Secret volumes), never copy them.
 */
export function leakedSecrets(objects: K8sObject[]): string[] {
  const secrets = objects
    .filter((o) => o.kind === 'Secret')
    .flatMap((o) =>
      Object.entries((o.data ?? {}) as Record<string, string>).map(([k, v]) => ({ where: `${o.metadata.name}/${k}`, value: decode(v) })),
    )
    .filter((s) => s.value.length >= 6)
  const out: string[] = []
  for (const o of objects) {
    if (o.kind === 'Secret') continue
    const text = JSON.stringify(o)
    for (const s of secrets) if (text.includes(s.value)) out.push(`${o.kind}/${o.metadata.name} holds the value of Secret ${s.where}`)
  }
  return out
}

function decode(b64: string): string {
  return Buffer.from(b64, 'base64').toString('utf8')
}

/** Does a matchLabels selector select these labels? */
export function selects(matchLabels: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (matchLabels === undefined || Object.keys(matchLabels).length === 0) return false
  return Object.entries(matchLabels).every(([k, v]) => labels?.[k] === v)
}
