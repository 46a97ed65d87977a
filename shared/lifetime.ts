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

/**
 * The life a cached token must have left to serve a request
 * (docs/contract.md, "Long-lived tokens"): `minLifetimeSeconds`, and for a
 * request that asks `lifetimeSeconds`, that lifetime less the refresh skew,
 * so that a token covers the request it would have been minted for, give or
 * take the skew. Without `lifetimeSeconds`, today's rule alone.
 */
export function requiredLifetimeSeconds(
  minLifetimeSeconds: number,
  lifetimeSeconds: number | undefined,
  skewSeconds: number,
): number {
  return lifetimeSeconds === undefined
    ? minLifetimeSeconds
    : Math.max(minLifetimeSeconds, lifetimeSeconds - skewSeconds);
}
