/** Backoff settings: base and cap of the delay, and the random source for jitter. */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  random: () => number;
}

/**
 * Delay before retry number `attempt` (0-based): capped exponential backoff
 * with "equal jitter", so the delay is at least half of the exponential step
 * (it never collapses to zero) and never above the cap.
 */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const step = Math.min(options.capMs, options.baseMs * 2 ** attempt);
  return Math.round(step / 2 + options.random() * (step / 2));
}

/** Parses `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date. Returns milliseconds, or undefined. */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Whether an HTTP status may succeed if retried: 429 and 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599);
}
