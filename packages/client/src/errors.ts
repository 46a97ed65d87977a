import { WIRE_ERROR_CODES, type WireErrorCode } from '../../wire/wire.js';

/** Codes the client itself raises: the broker could not be reached, or answered outside its contract (a redirect, HTML, a 200 without a token). */
export const CLIENT_ERROR_CODES = ['network_error', 'invalid_response'] as const;

/** Every `code` a `BrokerClientError` can carry: the broker's own, or the client's. */
export type BrokerClientErrorCode = WireErrorCode | (typeof CLIENT_ERROR_CODES)[number];

/** Whether `value` is one of the broker's `error` codes. */
export function isWireErrorCode(value: unknown): value is WireErrorCode {
  return typeof value === 'string' && (WIRE_ERROR_CODES as readonly string[]).includes(value);
}

/** An error the broker answered with, typed by its contract code. */
export class BrokerClientError extends Error {
  /** The broker's `error` code; `network_error` when it could not be reached; `invalid_response` when it answered outside its contract. */
  readonly code: BrokerClientErrorCode;
  /** The HTTP status; 0 when the broker could not be reached. */
  readonly status: number;
  /** Google's error code on a 502. */
  readonly upstreamError: string | undefined;
  /** Seconds to wait before retrying (429, 503). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: BrokerClientErrorCode,
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
