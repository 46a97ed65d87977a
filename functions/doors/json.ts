import type { Response } from '@google-cloud/functions-framework';
import type {
  IdTokenResponseBody,
  JwtResponseBody,
  PurgeResponseBody,
  TokenResponseBody,
} from '../../packages/wire/wire.js';
import type { Served } from '../../shared/cache/types.js';
import { BrokerError } from '../../shared/errors.js';
import { remainingSeconds } from '../../shared/lifetime.js';
import type { MintRequest } from '../../shared/request.js';
import { header } from '../edge/request-log.js';
import { cacheStatus, sendError, sendJson } from '../edge/respond.js';
import type { Door, Written } from './door.js';
import { isMediaType, utf8 } from './media-type.js';

/** Said with every purge that reached only this process (no shared cache; docs/contract.md). */
const PURGE_THIS_INSTANCE_NOTE =
  'No shared cache is configured, so only this instance was purged. Other instances keep serving the tokens they hold until those expire (at most an hour); to drop them too, configure a shared cache or restart every instance.';

/**
 * The broker's JSON API (docs/contract.md, "Requests", "Responses",
 * "Errors"): `token`, `jwt`, `idtoken` and `purge`, the caller's ID token in
 * `Authorization`.
 */
export const jsonDoor: Door = {
  name: 'json',

  read(req, action) {
    return {
      action,
      credential: {
        authorization: req.headers.authorization,
        serverlessAuthorization: header(req, 'x-serverless-authorization'),
      },
      body: parseJsonBody(req.headers['content-type'], req.rawBody),
    };
  },

  answer(res, result, requestId, nowMs): Written {
    if ('purged' in result) {
      const { accounts, dropped, reach, withinSeconds } = result.purged;
      const body: PurgeResponseBody = {
        purged: accounts === 'all' ? 'all' : [...accounts],
        dropped_local_entries: dropped,
        reach,
        ...(withinSeconds === undefined ? {} : { within_seconds: withinSeconds }),
        ...(reach === 'this_instance' ? { note: PURGE_THIS_INSTANCE_NOTE } : {}),
      };
      return { status: 200, size: sendJson(res, 200, body, requestId) };
    }
    const body = responseBody(result.request.kind, result.served, nowMs);
    return { status: 200, size: sendJson(res, 200, body, requestId, cacheStatus(result.served)) };
  },

  fail(res: Response, err: unknown, requestId: string): Written {
    const sent = sendError(res, err, requestId);
    return {
      status: sent.status,
      size: sent.size,
      error: sent.body.error,
      ...upstream(sent.body.upstream_error),
    };
  },
};

function upstream(code: string | undefined): { upstreamError?: string } {
  return code === undefined ? {} : { upstreamError: code };
}

/**
 * The JSON door's body: checks the media type (415 for anything but UTF-8
 * JSON), then parses the bytes the edge read (400 when they are not a JSON
 * object or array). An empty body is `{}`. V8's `JSON.parse` is linear in its
 * input and does not recurse on the stack, and the edge caps the input at
 * 64 KiB, so this costs at most a few milliseconds whatever a caller sends.
 */
export function parseJsonBody(contentType: string | undefined, raw: Buffer | undefined): unknown {
  if (!isMediaType(contentType, 'application/json')) {
    throw new BrokerError(
      'unsupported_media_type',
      'Send the body as JSON, with Content-Type: application/json.',
    );
  }
  const text = utf8(raw);
  if (text.length === 0) return {};
  const first = /^[ \t\n\r]*(.)/s.exec(text)?.[1];
  if (first === '{' || first === '[') {
    try {
      return JSON.parse(text);
    } catch {
      // answered below
    }
  }
  throw new BrokerError('invalid_request', 'The body is not valid JSON.');
}

function responseBody(
  kind: MintRequest['kind'],
  served: Served,
  nowMs: number,
): TokenResponseBody | JwtResponseBody | IdTokenResponseBody {
  const expiresIn = Math.max(0, remainingSeconds(served.expiresAt, nowMs));
  const expiresAt = Math.floor(served.expiresAt / 1000);
  switch (kind) {
    case 'token':
      return {
        access_token: served.token,
        token_type: 'Bearer',
        expires_in: expiresIn,
        expires_at: expiresAt,
        scope: served.scope ?? '',
      };
    case 'jwt':
      return { token: served.token, token_type: 'Bearer', expires_in: expiresIn, expires_at: expiresAt };
    case 'idtoken':
      return { id_token: served.token, expires_in: expiresIn, expires_at: expiresAt };
  }
}
