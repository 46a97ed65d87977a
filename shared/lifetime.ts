/** Life left in a token at `nowMs`, in whole seconds (rounded down). */
export function remainingSeconds(expiresAtMs: number, nowMs: number): number {
  return Math.floor((expiresAtMs - nowMs) / 1000);
}

/**
 * Whether a cached token may be served (docs/contract.md, "Serving"): its life
 * left must be more than both the refresh skew and the caller's minimum.
 */
export function isServable(
  expiresAtMs: number,
  nowMs: number,
  skewSeconds: number,
  minLifetimeSeconds: number,
): boolean {
  return expiresAtMs - nowMs > Math.max(skewSeconds, minLifetimeSeconds) * 1000;
}

/** Least life a stale token needs to be served when Google is unreachable (docs/contract.md, "Serving when Google is unreachable"). */
export const STALE_MIN_SECONDS = 60;

/** Whether a cached token may be served while Google's token endpoint is unreachable. */
export function isServableStale(expiresAtMs: number, nowMs: number, minLifetimeSeconds: number): boolean {
  return expiresAtMs - nowMs > Math.max(STALE_MIN_SECONDS, minLifetimeSeconds) * 1000;
}
