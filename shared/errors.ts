/**
 * The broker's single error tree. Every failure that can reach a caller is a
 * `BrokerError` with a closed `code`; `HTTP_STATUS` maps each code to its
 * status. Messages are public: they never hold a key, a token or a raw
 * upstream body. The upstream body, where there is one, is kept on a
 * non-enumerable property so that it never reaches JSON or a log by accident.
 */
import type { ErrorResponseBody, WireErrorCode } from '../packages/wire/wire.js';

/** The public error codes: the wire contract's closed list (docs/contract.md, "Errors"). */
export type ErrorCode = WireErrorCode;

/** HTTP status for each code. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  invalid_request: 400,
  invalid_token: 401,
  access_denied: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  upstream_rejected: 502,
  upstream_unavailable: 503,
  internal_error: 500,
  unsupported_grant_type: 400,
  invalid_grant: 400,
  invalid_target: 400,
};

export interface BrokerErrorOptions {
  cause?: unknown;
  /** Seconds a caller should wait before trying again (429, 503). */
  retryAfterSeconds?: number;
  /** Google's `error` code, or the secret store's status, for 502s. */
  upstreamError?: string;
  /** The raw upstream body, kept for operators; never serialised. */
  upstreamBody?: unknown;
  /**
   * What an operator should do, when saying it names what callers must not
   * learn (the broker's own account, a delegation chain, the account behind
   * a tenant): it reaches the request's log line, never the answer.
   */
  remedy?: string;
  /**
   * Why, as a stable machine-readable code, like jose's `.reason`: a
   * denial's failed dimension (`scope_not_granted`), why a caller token was
   * refused (`expired`, `wrong_audience`). It reaches the audit line, never
   * the answer: callers get the text.
   */
  reason?: string;
}

/** The base of every error the broker answers with. */
export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds: number | undefined;
  readonly upstreamError: string | undefined;
  readonly reason: string | undefined;
  declare readonly upstreamBody: unknown;
  declare readonly remedy: string | undefined;

  constructor(code: ErrorCode, description: string, options: BrokerErrorOptions = {}) {
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BrokerError';
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.upstreamError = options.upstreamError;
    this.reason = options.reason;
    Object.defineProperty(this, 'upstreamBody', { value: options.upstreamBody, enumerable: false });
    Object.defineProperty(this, 'remedy', { value: options.remedy, enumerable: false });
  }

  /** The HTTP status that this error answers with. */
  get status(): number {
    return HTTP_STATUS[this.code];
  }
}

/** A `400 invalid_request` that says what is wrong with the request. */
export function invalidRequest(description: string): BrokerError {
  return new BrokerError('invalid_request', description);
}

/** The JSON body of an error response. */
export type ErrorBody = ErrorResponseBody;

/** Turns any thrown value into a public error body; unknown errors become a bland 500. */
export function toErrorBody(err: unknown): { status: number; body: ErrorBody; retryAfterSeconds?: number } {
  if (err instanceof BrokerError) {
    const body: ErrorBody = { error: err.code, error_description: err.message };
    if (err.upstreamError !== undefined) body.upstream_error = err.upstreamError;
    return err.retryAfterSeconds === undefined
      ? { status: err.status, body }
      : { status: err.status, body, retryAfterSeconds: err.retryAfterSeconds };
  }
  return {
    status: 500,
    body: { error: 'internal_error', error_description: 'The broker failed unexpectedly; see its logs.' },
  };
}

/** Configuration or policy that fails validation; lists every problem at once. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(what: string, problems: readonly string[]) {
    super(`${what} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
