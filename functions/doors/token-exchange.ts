import { parseStsAudience } from '../../packages/wire/rules.js';
import {
  ACCESS_TOKEN_TYPE,
  type StsRequestForm,
  type StsResponseBody,
  SUBJECT_TOKEN_TYPES,
  TOKEN_EXCHANGE_GRANT_TYPE,
} from '../../packages/wire/wire.js';
import type { Served } from '../../shared/cache/types.js';
import { BrokerError, invalidRequest as invalid } from '../../shared/errors.js';
import { remainingSeconds } from '../../shared/lifetime.js';
import type { Call } from '../../shared/service.js';
import { cacheStatus, sendError, sendJson } from '../edge/respond.js';
import type { Door, Written } from './door.js';
import { isMediaType, utf8 } from './media-type.js';

/**
 * OAuth 2.0 Token Exchange (RFC 8693) as the broker speaks it, so that
 * Google's own auth libraries can use it from an `external_account`
 * credential file (docs/contract.md, "Token exchange (RFC 8693)"). Pure: form text in,
 * a service call out; a served token or an error in, RFC 6749 JSON out.
 */

const REQUIRED = [
  'grant_type',
  'subject_token',
  'subject_token_type',
  'audience',
] as const satisfies readonly (keyof StsRequestForm)[];
/** The scope asked when a form names none, as Google's own STS assumes (Python's google-auth sends none). */
export const DEFAULT_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/**
 * Reads a token-exchange form into a `token` call. Throws `unsupported_media_type`,
 * `invalid_request` (a required parameter missing or repeated, a malformed
 * audience) or `unsupported_grant_type`. Scopes and the target are then
 * checked by the `token` operation's own parser.
 */
export function parseTokenExchange(contentType: string | undefined, rawBody: Buffer | undefined): Call {
  if (!isMediaType(contentType, 'application/x-www-form-urlencoded')) {
    throw new BrokerError(
      'unsupported_media_type',
      'Send the token exchange as a form, with Content-Type: application/x-www-form-urlencoded.',
    );
  }
  const form = readForm(utf8(rawBody));
  const one = (name: string): string | undefined => {
    const values = form.getAll(name);
    if (values.length > 1) throw invalid(`the parameter "${name}" is repeated`);
    return values[0];
  };
  const values = Object.fromEntries(REQUIRED.map((name) => [name, one(name)])) as Record<
    (typeof REQUIRED)[number],
    string | undefined
  >;
  // RFC 6749 §5.2: a grant type given but not supported is its own error, before any other problem.
  const grantType = values.grant_type;
  if (grantType !== undefined && grantType.trim() !== '' && grantType !== TOKEN_EXCHANGE_GRANT_TYPE) {
    throw new BrokerError('unsupported_grant_type', `grant_type must be ${TOKEN_EXCHANGE_GRANT_TYPE}.`);
  }
  const missing = REQUIRED.filter((name) => values[name] === undefined || values[name].trim() === '');
  if (missing.length > 0) throw invalid(`missing required parameter(s): ${missing.join(', ')}`);
  if (!(SUBJECT_TOKEN_TYPES as readonly string[]).includes(values.subject_token_type as string)) {
    throw invalid(`subject_token_type must be one of ${SUBJECT_TOKEN_TYPES.join(', ')}`);
  }
  const requested = one('requested_token_type');
  if (requested !== undefined && requested !== ACCESS_TOKEN_TYPE) {
    throw invalid(`requested_token_type, when given, must be ${ACCESS_TOKEN_TYPE}`);
  }
  const named = parseStsAudience(values.audience as string);
  if (named === undefined) {
    throw invalid(
      'audience must be //token-broker/serviceAccounts/EMAIL or //token-broker/tenants/ID, optionally followed by /subjects/USER_EMAIL',
    );
  }
  const scopes = (one('scope') ?? '').split(' ').filter((s) => s !== '');
  const body: Record<string, unknown> = {
    ...named.account,
    scopes: scopes.length === 0 ? [DEFAULT_SCOPE] : scopes,
  };
  if (named.subject !== undefined) body['subject'] = named.subject;
  return { action: 'token', credential: { subjectToken: (values.subject_token as string).trim() }, body };
}

/** The most parameters a token-exchange form may hold (docs/contract.md, "Limits"); Google's libraries send at most 7. */
export const MAX_FORM_PARAMETERS = 100;

/**
 * The form's parameters, in time linear in its length: the parameters are
 * counted first (a 400 past MAX_FORM_PARAMETERS, before any is decoded),
 * then `URLSearchParams` decodes them, and each is looked up by name.
 */
function readForm(text: string): URLSearchParams {
  let count = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('&', start);
    if (end < 0) end = text.length;
    if (end > start && ++count > MAX_FORM_PARAMETERS) {
      throw invalid(`the form holds more than ${MAX_FORM_PARAMETERS} parameters`);
    }
    start = end + 1;
  }
  return new URLSearchParams(text);
}

/** RFC 8693 §2.2.1's answer for a served token. */
function tokenExchangeResponse(served: Served, nowMs: number): StsResponseBody {
  return {
    access_token: served.token,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: Math.max(0, remainingSeconds(served.expiresAt, nowMs)),
  };
}

/**
 * Maps the JSON API's errors to token exchange's: a bad caller token is
 * `invalid_grant` (as Google's own STS answers), a denial is
 * `invalid_target` with the one text every denial gets. Other errors are
 * unchanged.
 */
export function tokenExchangeError(err: unknown): unknown {
  if (!(err instanceof BrokerError)) return err;
  if (err.code === 'invalid_token') {
    return new BrokerError(
      'invalid_grant',
      `The subject_token is not a valid caller ID token: ${err.message}`,
      {
        cause: err,
      },
    );
  }
  if (err.code === 'access_denied') return new BrokerError('invalid_target', err.message, { cause: err });
  return err;
}

/**
 * OAuth 2.0 Token Exchange (RFC 8693), the door Google's auth libraries use
 * from an `external_account` credential file: a form in, a `token` call
 * out; RFC 8693 and RFC 6749 JSON back.
 */
export const tokenExchangeDoor: Door = {
  name: 'sts',

  read: (req) => parseTokenExchange(req.headers['content-type'], req.rawBody),

  answer(res, result, requestId, nowMs): Written {
    if (!('served' in result)) throw new TypeError('token exchange only mints');
    const body = tokenExchangeResponse(result.served, nowMs);
    return { status: 200, size: sendJson(res, 200, body, requestId, cacheStatus(result.served)) };
  },

  fail(res, err, requestId): Written {
    const sent = sendError(res, tokenExchangeError(err), requestId);
    return {
      status: sent.status,
      size: sent.size,
      error: sent.body.error,
      ...(sent.body.upstream_error === undefined ? {} : { upstreamError: sent.body.upstream_error }),
    };
  },
};
