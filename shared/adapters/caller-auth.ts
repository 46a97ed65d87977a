import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, type JWTPayload, jwtVerify } from 'jose';
import { canonicalEmail } from '../email.js';
import { BrokerError } from '../errors.js';
import { Lru } from '../lru.js';
import { createJwksCache } from './jwks.js';

/** The authenticated caller. */
export interface Caller {
  /** Canonical (lower-case) email: the caller's identity in the policy. */
  readonly email: string;
  readonly sub: string;
  readonly iss: string;
}

/**
 * Where a caller token arrived: in a header (which Cloud Run's invoker check
 * may have checked), or as a token exchange's `subject_token` in a form body,
 * which Cloud Run never checks, so its signature must always be there.
 */
export type CredentialOrigin = 'header' | 'subject_token';

/** Verifies the `Authorization` header of a request. */
export interface CallerVerifier {
  /**
   * The synchronous fast path: the caller of a token this verifier already
   * verified and that has not expired; undefined otherwise (then `verify`).
   */
  cached(authorization: string | undefined): Caller | undefined;
  /**
   * Verifies the `Authorization` header. `serverlessAuthorization` is the
   * request's `X-Serverless-Authorization` header: when it is present at all,
   * Cloud Run checked that one and left `Authorization` as the client sent
   * it, so a token there whose signature reads `SIGNATURE_REMOVED_BY_GOOGLE`
   * proves nothing and is refused. Throws BrokerError `invalid_token` (401),
   * or `upstream_unavailable` when no JWKS could ever be fetched.
   */
  verify(
    authorization: string | undefined,
    serverlessAuthorization: string | undefined,
    origin?: CredentialOrigin,
  ): Promise<Caller>;
  /** Fetches the JWKS ahead of the first request; a failure is left for the first request to retry. */
  warm(): Promise<void>;
}

export interface CallerVerifierOptions {
  jwksUrl: string;
  issuers: readonly string[];
  audience: string;
  clockToleranceSeconds: number;
  /** Trust tokens whose signature Cloud Run's IAM replaced with `SIGNATURE_REMOVED_BY_GOOGLE`. Off by default. */
  allowSignatureRemovedByGoogle: boolean;
  fetchTimeoutMs?: number;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

const REMOVED = 'SIGNATURE_REMOVED_BY_GOOGLE';
/**
 * RFC 7235 §2.1: the scheme is case-insensitive and followed by one or more
 * spaces. Anchored, with no nested quantifier: linear in the header's length.
 */
const BEARER = /^[ \t]*Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)[ \t]*$/i;

/**
 * The longest `Authorization` header (or `subject_token`) looked at: Google ID
 * tokens are about 1 KB, and other issuers' tokens 1–2 KB. A longer one is
 * refused before any parsing, hashing or lookup (docs/contract.md, "Limits").
 */
export const MAX_CREDENTIAL_BYTES = 4096;

/** How many verified tokens a process remembers; each entry is about 200 bytes whatever the token's size. */
const VERIFIED_ENTRIES = 10_000;

/**
 * The token in a well-formed `Authorization: Bearer <JWT>` header of at most
 * MAX_CREDENTIAL_BYTES; undefined otherwise.
 */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined || authorization.length > MAX_CREDENTIAL_BYTES) return undefined;
  return BEARER.exec(authorization)?.[1];
}

/** What a verified token is remembered under: a hash of the token itself, not of the header it came in. */
function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/**
 * Verifies a caller's Google-signed OIDC ID token (docs/contract.md, "Caller
 * authentication"): RS256 only, against cached JWKS keys; `iss`, `aud`,
 * `exp`/`iat` with tolerance; a verified `email`.
 */
export function createCallerVerifier(options: CallerVerifierOptions): CallerVerifier {
  const now = options.now ?? Date.now;
  const keys = createJwksCache({
    url: options.jwksUrl,
    ...(options.fetchTimeoutMs ? { timeoutMs: options.fetchTimeoutMs } : {}),
    now,
  });
  const issuers = [...options.issuers];
  // A token verified once is not verified again until it expires: the signature check (RSA) and the decode
  // are the costliest part of a cache hit. Keyed by a hash of the token, so however a caller spells the
  // header (case, spaces) one token is one entry of a fixed size.
  const verified = new Lru<string, { caller: Caller; exp: number }>(VERIFIED_ENTRIES);
  const unexpired = (known: { exp: number }) => known.exp > now() / 1000 - options.clockToleranceSeconds;

  function checkClaims(payload: JWTPayload): Caller {
    const t = now() / 1000;
    const tol = options.clockToleranceSeconds;
    if (typeof payload.iss !== 'string' || !issuers.includes(payload.iss))
      throw refused('wrong_issuer', 'the token has the wrong issuer');
    const aud = payload.aud;
    if (
      !(aud === options.audience || (Array.isArray(aud) && aud.length === 1 && aud[0] === options.audience))
    ) {
      throw refused(
        'wrong_audience',
        `the token is for another audience; the broker expects \`aud\` ${options.audience}`,
      );
    }
    if (typeof payload.exp !== 'number' || typeof payload.iat !== 'number')
      throw refused('missing_claims', 'the token lacks `exp` or `iat`');
    if (payload.exp <= t - tol) throw refused('expired', 'the token has expired');
    if (payload.iat > t + tol) throw refused('issued_in_future', 'the token was issued in the future');
    if (typeof payload.nbf === 'number' && payload.nbf > t + tol)
      throw refused('not_yet_valid', 'the token is not valid yet');
    if (payload['email_verified'] !== true)
      throw refused('no_verified_email', 'the token has no verified email');
    const email = canonicalEmail(payload['email']);
    if (email === undefined) throw refused('no_verified_email', 'the token has no valid email');
    return { email, sub: typeof payload.sub === 'string' ? payload.sub : '', iss: payload.iss };
  }

  return {
    warm: () => keys.refresh().catch(() => {}),

    cached(authorization) {
      const token = bearerToken(authorization);
      const known = token === undefined ? undefined : verified.get(tokenKey(token));
      return known !== undefined && unexpired(known) ? known.caller : undefined;
    },

    async verify(authorization, serverlessAuthorization, origin = 'header') {
      if (authorization === undefined || authorization === '') {
        throw refused('no_credential', 'send your Google ID token in `Authorization: Bearer <token>`');
      }
      if (authorization.length > MAX_CREDENTIAL_BYTES) {
        throw refused('credential_too_large', `the credential is longer than ${MAX_CREDENTIAL_BYTES} bytes`);
      }
      const token = bearerToken(authorization);
      if (token === undefined) throw refused('malformed', 'the Authorization header is not `Bearer <JWT>`');
      const key = tokenKey(token);
      const known = verified.get(key);
      if (known !== undefined) {
        if (unexpired(known)) return known.caller;
        verified.delete(key);
        throw refused('expired', 'the token has expired');
      }

      if (token.endsWith(`.${REMOVED}`)) {
        if (origin === 'subject_token') {
          throw refused(
            'signature_removed',
            'a subject_token must carry its signature: Cloud Run never checks a form body',
          );
        }
        if (!options.allowSignatureRemovedByGoogle) {
          throw refused(
            'signature_removed',
            "the token's signature was removed by Cloud Run's IAM check. Send the ID token in `X-Serverless-Authorization` (for Cloud Run) and in `Authorization` (for the broker)",
          );
        }
        // Cloud Run removes the signature of the header it checked. With X-Serverless-Authorization present, that
        // header was the one checked and Authorization arrived as the client wrote it: anyone can write this.
        if (serverlessAuthorization !== undefined) {
          throw refused(
            'signature_removed',
            'a token without its signature is accepted only when Cloud Run checked it, and with `X-Serverless-Authorization` present Cloud Run checks that header instead; send the signed ID token in `Authorization`',
          );
        }
        let header: ReturnType<typeof decodeProtectedHeader>;
        let payload: JWTPayload;
        try {
          header = decodeProtectedHeader(token);
          payload = decodeJwt(token);
        } catch {
          throw refused('malformed', 'the token is malformed');
        }
        if (header.alg !== 'RS256') throw refused('alg_not_allowed', 'only RS256 tokens are accepted');
        return checkClaims(payload);
      }

      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, {
          algorithms: ['RS256'],
          clockTolerance: options.clockToleranceSeconds,
          currentDate: new Date(now()),
        }));
      } catch (err) {
        if (err instanceof BrokerError) throw err;
        if (err instanceof errors.JWTExpired) throw refused('expired', 'the token has expired');
        if (err instanceof errors.JOSEAlgNotAllowed)
          throw refused('alg_not_allowed', 'only RS256 tokens are accepted');
        if (err instanceof errors.JWTClaimValidationFailed)
          throw refused('invalid_claim', 'the token has an invalid claim');
        throw refused('bad_signature', 'the token signature does not verify');
      }
      const caller = checkClaims(payload);
      verified.set(key, { caller: Object.freeze(caller), exp: payload.exp as number });
      return caller;
    },
  };
}

/** Why a caller token was refused: the stable code for the audit line, the text for the caller. */
export type RefusalReason =
  | 'no_credential'
  | 'credential_too_large'
  | 'malformed'
  | 'signature_removed'
  | 'alg_not_allowed'
  | 'bad_signature'
  | 'invalid_claim'
  | 'missing_claims'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'expired'
  | 'issued_in_future'
  | 'not_yet_valid'
  | 'no_verified_email';

/** A `401 invalid_token` with its reason. */
function refused(reason: RefusalReason, text: string): BrokerError {
  return new BrokerError('invalid_token', `Caller authentication failed: ${text}.`, { reason });
}
