/**
 * Lets an event through at most once per `intervalMs` per kind, and counts
 * the ones it held back: for warnings that would otherwise flood the logs.
 */
export class Throttle {
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(intervalMs: number, now: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** Returns how many events of this kind were held back since the last one let through, or undefined to hold this one back. */
  take(kind: string): number | undefined {
    const t = this.#now();
    const last = this.#last.get(kind);
    if (last && t - last.at < this.#intervalMs) {
      last.suppressed++;
      return undefined;
    }
    this.#last.set(kind, { at: t, suppressed: 0 });
    return last?.suppressed ?? 0;
  }
}
