import type { Request, Response } from '@google-cloud/functions-framework';
import type { Action, Call, Result } from '../../shared/service.js';

/** A successful result, as a door answers it. */
export type Success = Extract<Result, { ok: true }>;

/** What a door wrote, for the request's one log line. */
export interface Written {
  readonly status: number;
  readonly size: number;
  /** The `error` code answered, for an error. */
  readonly error?: string;
  readonly upstreamError?: string;
}

/**
 * A front door: one wire dialect over the one service. It owns its
 * parsing, its answers and its errors; the edge (body, limits, timeouts)
 * and the request log are shared (docs/contract.md, "Targets and paths").
 */
export interface Door {
  /** Its name in the request's log labels: `json`, or `sts` for token exchange. */
  readonly name: 'json' | 'sts';
  /**
   * Reads a request into a service call, after its route and method are
   * known. Throws BrokerError for what it refuses before the service
   * (media type, body, form).
   */
  read(req: Request, action: Action): Call;
  /** Writes a success. */
  answer(res: Response, result: Success, requestId: string, nowMs: number): Written;
  /** Writes an error, in this door's dialect. */
  fail(res: Response, err: unknown, requestId: string): Written;
}
