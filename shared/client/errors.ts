/** An error the broker answered with, typed by its contract code. */
export class BrokerClientError extends Error {
  /** The contract's `error` code, or `network_error` when the broker could not be reached. */
  readonly code: string;
  readonly status: number;
  /** Google's error code on a 502. */
  readonly upstreamError: string | undefined;
  /** Seconds to wait before retrying (429, 503). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: string,
    status: number,
    description: string,
    extra: {
      upstreamError?: string | undefined;
      retryAfterSeconds?: number | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(description, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'BrokerClientError';
    this.code = code;
    this.status = status;
    this.upstreamError = extra.upstreamError;
    this.retryAfterSeconds = extra.retryAfterSeconds;
  }

  /** Whether trying again later may succeed. */
  get retryable(): boolean {
    return this.status === 429 || this.status === 503 || this.code === 'network_error';
  }
}
