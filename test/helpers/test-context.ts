/**
 * The few members of a tap Test that the e2e helpers use. Structural, so the helpers accept the root `t`, a
 * subtest's `t`, or a small fake in a unit test of a helper.
 */
export interface TestContext {
  teardown(fn: () => unknown): void
  fail(message: string): unknown
  plan(n: number, comment?: string): void
  comment(...args: unknown[]): void
}
