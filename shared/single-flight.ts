/**
 * Shares one in-flight promise among concurrent callers with the same key:
 * the work runs once, and every caller gets its result or its error.
 */
export class SingleFlight<T> {
  readonly #inflight = new Map<string, Promise<T>>();

  /** Runs `work` unless a call for `key` is already in flight, in which case it joins that call. */
  run(key: string, work: () => Promise<T>): Promise<T> {
    const existing = this.#inflight.get(key);
    if (existing) return existing;
    const promise = (async () => {
      try {
        return await work();
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, promise);
    return promise;
  }

  /** How many distinct calls are in flight. */
  get size(): number {
    return this.#inflight.size;
  }
}
