import type { ServerResponse } from 'node:http';
import type { Served } from '../../shared/cache/types.js';
import { type ErrorBody, toErrorBody } from '../../shared/errors.js';

/**
 * Writes a JSON body with its status and every header in one `writeHead`
 * (a flat list: no per-header object work on the hot path): the headers
 * every response carries (docs/contract.md: `Cache-Control: no-store`; plus the
 * request id), then `extra` name/value pairs. Never HTML. Returns the body's
 * size in bytes.
 */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  requestId: string,
  extra: readonly string[] = [],
): number {
  const text = JSON.stringify(body);
  const length = Buffer.byteLength(text);
  res.writeHead(status, [
    'Cache-Control',
    'no-store',
    'Pragma',
    'no-cache',
    'X-Content-Type-Options',
    'nosniff',
    'X-Request-Id',
    requestId,
    'Content-Type',
    'application/json; charset=utf-8',
    'Content-Length',
    String(length),
    ...extra,
  ]);
  res.end(text);
  return length;
}

/** Writes the contract's error body for any thrown value, with `Retry-After` and `WWW-Authenticate` where they apply. */
export function sendError(
  res: ServerResponse,
  err: unknown,
  requestId: string,
  extra: readonly string[] = [],
): { status: number; body: ErrorBody; size: number } {
  const { status, body, retryAfterSeconds } = toErrorBody(err);
  const headers = [...extra];
  if (retryAfterSeconds !== undefined)
    headers.push('Retry-After', String(Math.max(1, Math.ceil(retryAfterSeconds))));
  if (status === 401) headers.push('WWW-Authenticate', 'Bearer error="invalid_token"');
  if (status === 405) headers.push('Allow', 'POST');
  return { status, body, size: sendJson(res, status, body, requestId, headers) };
}

const CACHE_STATUS = {
  hit: ['Cache-Status', 'broker; hit'],
  miss: ['Cache-Status', 'broker; fwd=miss'],
  stale: ['Cache-Status', 'broker; hit; detail=stale'],
} as const;

/** The RFC 9211 `Cache-Status` header of a served token, as a name/value pair for `sendJson`. */
export function cacheStatus(served: Served): readonly string[] {
  return CACHE_STATUS[served.cache];
}
