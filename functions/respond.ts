import type { ServerResponse } from 'node:http';
import { type ErrorBody, toErrorBody } from '../shared/errors.js';

/** Headers every response carries (CONTRACT.md: `Cache-Control: no-store`; plus a request id). */
export function baseHeaders(res: ServerResponse, requestId: string): void {
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Pragma', 'no-cache');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Request-Id', requestId);
}

/** Writes a JSON body with its status; never HTML. */
export function sendJson(res: ServerResponse, status: number, body: unknown): number {
  const text = JSON.stringify(body);
  const length = Buffer.byteLength(text);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', length);
  res.end(text);
  return length;
}

/** Writes the contract's error body for any thrown value, with `Retry-After` and `WWW-Authenticate` where they apply. */
export function sendError(
  res: ServerResponse,
  err: unknown,
): { status: number; body: ErrorBody; size: number } {
  const { status, body, retryAfterSeconds } = toErrorBody(err);
  if (retryAfterSeconds !== undefined)
    res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryAfterSeconds))));
  if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
  if (status === 405) res.setHeader('Allow', 'POST');
  return { status, body, size: sendJson(res, status, body) };
}
