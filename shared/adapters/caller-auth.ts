import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, type JWTPayload, jwtVerify } from 'jose';
import { BrokerError } from '../errors.js';
import { Lru } from '../lru.js';
import type { CompiledIssuer } from '../policy/types.js';
import { type Caller, refused } from './caller.js';
import type { HttpClient } from './http.js';
import { googleTrust, policyIssuerTrust, type Trust } from './trusted-issuers.js';

export type { Caller } from './caller.js';

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
   * or `upstream_unavailable` when the token's issuer's keys could never be fetched.
   */
  verify(
    authorization: string | undefined,
    serverlessAuthorization: string | undefined,
    origin?: CredentialOrigin,
  ): Promise<Caller>;
  /** Fetches every trusted issuer's keys ahead of the first request; a failure is left for the first request to retry. */
  warm(): Promise<void>;
}

export interface CallerVerifierOptions {
  /** Google's keys (`BROKER_JWKS_URL`). */
  jwksUrl: string;
  /** The `iss` values of Google's ID tokens (`BROKER_ISSUERS`). */
  issuers: readonly string[];
  audience: string;
  clockToleranceSeconds: number;
  /** Trust tokens whose signature Cloud Run's IAM replaced with `SIGNATURE_REMOVED_BY_GOOGLE`. Off by default. */
  allowSignatureRemovedByGoogle: boolean;
  /** The policy's issuers (docs/contract.md, "Trusted issuers"); none by default. */
  trustedIssuers?: readonly CompiledIssuer[];
  /** Their discovery documents may name an `http:` key set on loopback (`BROKER_ALLOW_LOOPBACK_ISSUERS`). */
  allowLoopbackIssuers?: boolean;
  fetchTimeoutMs?: number;
  /** Least time between two key-set fetches an unknown `kid` causes, per issuer (60 s). */
  keyRefetchCooldownMs?: number;
  http?: HttpClient;
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

/** The longest a caller token may be issued for, `exp - iat` (docs/contract.md, "Verification"). */
export const MAX_CALLER_TOKEN_LIFETIME_SECONDS = 24 * 3600;

/**
 * Verifies a caller's token (docs/contract.md, "Caller authentication" and
 * "Verification"): Google's ID tokens, and those of the policy's issuers,
 * with one design. The token's `iss` is read without verifying (the
 * credential is at most 4096 bytes) only to pick the trusted issuer it
 * names: an `iss` no issuer has is refused with no request anywhere. Then
 * the algorithm, `aud`, the times, the 24 h ceiling and the issuer's
 * identity claims, all before any key is fetched; then the signature,
 * against that issuer's own cached key set. A verified token is remembered
 * under a hash of itself until it expires.
 */
export function createCallerVerifier(options: CallerVerifierOptions): CallerVerifier {
  const now = options.now ?? Date.now;
  const fetching = {
    now,
    ...(options.http === undefined ? {} : { http: options.http }),
    ...(options.fetchTimeoutMs === undefined ? {} : { timeoutMs: options.fetchTimeoutMs }),
    ...(options.keyRefetchCooldownMs === undefined ? {} : { cooldownMs: options.keyRefetchCooldownMs }),
  };
  // Each `iss` to the one issuer it names: Google's under each of its spellings, each policy issuer under its own.
  const google = googleTrust({ ...fetching, jwksUrl: options.jwksUrl, audience: options.audience });
  const trusts = new Map<string, Trust>(options.issuers.map((iss) => [iss, google]));
  for (const issuer of options.trustedIssuers ?? []) {
    if (trusts.has(issuer.issuer)) throw new Error(`issuer ${issuer.issuer} is trusted twice`);
    trusts.set(
      issuer.issuer,
      policyIssuerTrust(issuer, { ...fetching, allowLoopback: options.allowLoopbackIssuers === true }),
    );
  }
  // A token verified once is not verified again until it expires: the signature check (RSA) and the decode
  // are the costliest part of a cache hit. Keyed by a hash of the token, so however a caller spells the
  // header (case, spaces) one token is one entry of a fixed size.
  const verified = new Lru<string, { caller: Caller; exp: number }>(VERIFIED_ENTRIES);
  const unexpired = (known: { exp: number }) => known.exp > now() / 1000 - options.clockToleranceSeconds;

  /** The trusted issuer a token names; refused, with no request anywhere, when none has its `iss`. */
  function trustOf(payload: JWTPayload): Trust {
    const trust = typeof payload.iss === 'string' ? trusts.get(payload.iss) : undefined;
    if (trust === undefined) throw refused('wrong_issuer', 'the token has the wrong issuer');
    return trust;
  }

  /** Everything but the signature: audience, times, the 24 h ceiling, the issuer's identity claims. */
  function checkClaims(trust: Trust, payload: JWTPayload): Caller {
    const t = now() / 1000;
    const tol = options.clockToleranceSeconds;
    trust.checkAudience(payload.aud);
    if (typeof payload.exp !== 'number' || typeof payload.iat !== 'number')
      throw refused('missing_claims', 'the token lacks `exp` or `iat`');
    if (payload.exp <= t - tol) throw refused('expired', 'the token has expired');
    if (payload.iat > t + tol) throw refused('issued_in_future', 'the token was issued in the future');
    if (typeof payload.nbf === 'number' && payload.nbf > t + tol)
      throw refused('not_yet_valid', 'the token is not valid yet');
    if (payload.exp - payload.iat > MAX_CALLER_TOKEN_LIFETIME_SECONDS)
      throw refused('lifetime_too_long', 'the token was issued for more than 24 hours');
    return trust.identify(payload);
  }

  /** The header and claims of a token, unverified. */
  function decode(token: string): { header: ReturnType<typeof decodeProtectedHeader>; payload: JWTPayload } {
    try {
      return { header: decodeProtectedHeader(token), payload: decodeJwt(token) };
    } catch {
      throw refused('malformed', 'the token is malformed');
    }
  }

  function checkAlgorithm(trust: Trust, alg: unknown): void {
    if (typeof alg !== 'string' || !trust.algorithms.includes(alg)) {
      throw refused(
        'alg_not_allowed',
        `only ${trust.algorithms.join(' and ')} tokens are accepted${trust.name === undefined ? '' : ' from this issuer'}`,
      );
    }
  }

  return {
    warm: async () => {
      await Promise.all([...new Set(trusts.values())].map((t) => t.keys.refresh().catch(() => {})));
    },

    cached(authorization) {
      const token = bearerToken(authorization);
      const known = token === undefined ? undefined : verified.get(tokenKey(token));
      return known !== undefined && unexpired(known) ? known.caller : undefined;
    },

    async verify(authorization, serverlessAuthorization, origin = 'header') {
      if (authorization === undefined || authorization === '') {
        throw refused('no_credential', 'send your ID token in `Authorization: Bearer <token>`');
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

      const { header, payload } = decode(token);
      const trust = trustOf(payload);

      if (token.endsWith(`.${REMOVED}`)) {
        if (origin === 'subject_token') {
          throw refused(
            'signature_removed',
            'a subject_token must carry its signature: Cloud Run never checks a form body',
          );
        }
        if (!options.allowSignatureRemovedByGoogle || trust !== google) {
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
        checkAlgorithm(trust, header.alg);
        return checkClaims(trust, payload);
      }

      // All that needs no key first, so that a token refused on its claims costs no fetch at its issuer.
      checkAlgorithm(trust, header.alg);
      if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 256)
        throw refused('malformed', 'the token names no `kid`');
      const caller = Object.freeze(checkClaims(trust, payload));
      let exp: number;
      try {
        ({
          payload: { exp = 0 },
        } = await jwtVerify(token, trust.keys, {
          algorithms: [...trust.algorithms],
          clockTolerance: options.clockToleranceSeconds,
          currentDate: new Date(now()),
        }));
      } catch (err) {
        if (err instanceof BrokerError) throw err;
        if (err instanceof errors.JWTExpired) throw refused('expired', 'the token has expired');
        if (err instanceof errors.JOSEAlgNotAllowed) checkAlgorithm(trust, undefined);
        if (err instanceof errors.JWKSNoMatchingKey)
          throw refused('unknown_key', "the token's `kid` is not in its issuer's key set");
        if (err instanceof errors.JWTClaimValidationFailed)
          throw refused('invalid_claim', 'the token has an invalid claim');
        throw refused('bad_signature', 'the token signature does not verify');
      }
      verified.set(key, { caller, exp });
      return caller;
    },
  };
}
