/** Concurrent calls with the same key share one execution and its result. */
export class SingleFlight<T> {
  private readonly inFlight = new Map<string, Promise<T>>()

  /** `joined` tells the caller whether it rode on another call's work. */
  do(key: string, fn: () => Promise<T>): { promise: Promise<T>; joined: boolean } {
    const existing = this.inFlight.get(key)
    if (existing) return { promise: existing, joined: true }
    const promise = fn().finally(() => this.inFlight.delete(key))
    this.inFlight.set(key, promise)
    return { promise, joined: false }
  }
}
