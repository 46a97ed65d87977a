import { Lru } from './lru.js';

/** A per-caller limit: at most `requests` in any `windowSeconds`. */
export interface Limit {
  readonly requests: number;
  readonly windowSeconds: number;
}

/** The outcome of one check, as a value (not thrown). */
export type RateDecision =
  | { readonly success: true }
  | { readonly success: false; readonly retryAfterSeconds: number };

/** Counts requests per caller; `check` records one request and says whether it is within the limit. */
export interface RateLimiter {
  check(caller: string, limit: Limit): Promise<RateDecision>;
}

/**
 * An in-process sliding-window limiter (the previous window's count weighted
 * by how much of it still overlaps), bounded in the callers it remembers.
 */
export function createMemoryRateLimiter(
  options: { now?: () => number; maxCallers?: number } = {},
): RateLimiter {
  const now = options.now ?? Date.now;
  const windows = new Lru<string, { start: number; current: number; previous: number }>(
    options.maxCallers ?? 10_000,
  );
  return {
    async check(caller, limit) {
      const t = now();
      const size = limit.windowSeconds * 1000;
      const start = Math.floor(t / size) * size;
      let w = windows.get(caller);
      if (w === undefined || w.start < start - size) w = { start, current: 0, previous: 0 };
      else if (w.start < start) w = { start, current: 0, previous: w.current };
      const overlap = 1 - (t - start) / size;
      const estimate = w.previous * overlap + w.current;
      if (estimate + 1 > limit.requests) {
        windows.set(caller, w);
        // When enough of the previous window has slid out, or the window ends.
        const untilWindowEnd = 1 - (t - start) / size;
        const wait =
          w.previous > 0
            ? Math.min((estimate + 1 - limit.requests) / w.previous, untilWindowEnd)
            : untilWindowEnd;
        return { success: false, retryAfterSeconds: Math.max(1, Math.ceil((wait * size) / 1000)) };
      }
      w.current++;
      windows.set(caller, w);
      return { success: true };
    },
  };
}
