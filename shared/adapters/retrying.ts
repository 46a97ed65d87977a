import { backoffDelay } from '../retry.js';

/** How hard an adapter tries one upstream call: per attempt, in all, and how it waits in between. */
export interface RetryBudget {
  /** Budget of one attempt. */
  attemptTimeoutMs?: number;
  /** Budget of the whole call, retries included. */
  deadlineMs?: number;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

/** What one attempt came to: a result, or a retryable failure (with the server's `Retry-After`, if any). */
export type Attempt<T> =
  | { readonly done: T }
  | { readonly retry: true; readonly cause: unknown; readonly retryAfterMs?: number | undefined };

/** Every attempt failed in a retryable way, or the deadline ran out. */
export interface Exhausted {
  readonly exhausted: true;
  readonly cause: unknown;
  readonly retryAfterMs: number | undefined;
}

/**
 * Runs `attempt` until it is done, with capped exponential backoff and
 * jitter between retryable failures, honouring `Retry-After`, within a
 * deadline. An attempt that throws ends the call (a refusal is never
 * retried); one that returns `{ retry }` is tried again while the budget
 * lasts. Each attempt gets the time it may take.
 */
export async function withRetries<T>(
  budget: RetryBudget,
  attempt: (timeoutMs: number) => Promise<Attempt<T>>,
): Promise<T | Exhausted> {
  const now = budget.now ?? Date.now;
  const attemptTimeoutMs = budget.attemptTimeoutMs ?? 5000;
  const maxAttempts = budget.maxAttempts ?? 4;
  const backoff = {
    baseMs: budget.baseDelayMs ?? 200,
    capMs: budget.maxDelayMs ?? 2000,
    random: budget.random ?? Math.random,
  };
  const sleep = budget.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = now() + (budget.deadlineMs ?? 10_000);
  let cause: unknown;
  let retryAfterMs: number | undefined;
  for (let i = 0; i < maxAttempts; i++) {
    const remaining = deadline - now();
    if (remaining <= 0) break;
    const outcome = await attempt(Math.min(attemptTimeoutMs, remaining));
    if ('done' in outcome) return outcome.done;
    cause = outcome.cause;
    retryAfterMs = outcome.retryAfterMs;
    if (i + 1 >= maxAttempts) break;
    const delay = Math.max(backoffDelay(i, backoff), retryAfterMs ?? 0);
    if (now() + delay >= deadline) break;
    await sleep(delay);
  }
  return { exhausted: true, cause, retryAfterMs };
}

/** Whether `withRetries` gave up. */
export function isExhausted(value: unknown): value is Exhausted {
  return typeof value === 'object' && value !== null && (value as { exhausted?: unknown }).exhausted === true;
}

/** Name and code of a network error, without anything it may quote (a URL, a header). */
export function safeCause(err: unknown): Error {
  if (!(err instanceof Error)) return new Error('network error');
  const code = (err as { cause?: { code?: unknown } }).cause?.code ?? (err as { code?: unknown }).code;
  return new Error(`${err.name}${typeof code === 'string' ? ` ${code}` : ''}`);
}
