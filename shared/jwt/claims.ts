import type { ServiceAccountKey } from '../service-account-key.js';

/** Longest life Google accepts for an assertion (docs/protocol.md: `exp` at most 1 hour after `iat`). */
export const MAX_ASSERTION_LIFETIME_SECONDS = 3600;

/** A JOSE header as the broker writes it; key order is the serialisation order. */
export interface JwtHeader {
  readonly alg: 'RS256';
  readonly typ: 'JWT';
  readonly kid?: string;
}

/** Claims of a JWT the broker signs; key order is the serialisation order. */
export type JwtClaims = Readonly<Record<string, string | number>>;

/** The seed's header, `{"alg":"RS256","typ":"JWT"}`. */
export const ASSERTION_HEADER: JwtHeader = Object.freeze({ alg: 'RS256', typ: 'JWT' });

/** Seconds since the epoch for a clock reading in milliseconds. */
export function epochSeconds(nowMs: number): number {
  return Math.floor(nowMs / 1000);
}

/**
 * Claims of the jwt-bearer assertion (docs/protocol.md, "The assertion"): `iss`,
 * `scope` separated by spaces, `aud` = the token URL, `iat`, `exp` = `iat` +
 * 3600, and `sub` only for domain-wide delegation.
 */
export function accessTokenAssertionClaims(input: {
  /** The service account's email. */
  issuer: string;
  scopes: readonly string[];
  subject?: string | undefined;
  tokenUrl: string;
  nowMs: number;
}): JwtClaims {
  const iat = epochSeconds(input.nowMs);
  const claims: Record<string, string | number> = {
    iss: input.issuer,
    scope: input.scopes.join(' '),
    aud: input.tokenUrl,
    iat,
    exp: iat + MAX_ASSERTION_LIFETIME_SECONDS,
  };
  if (input.subject !== undefined) claims['sub'] = input.subject;
  return claims;
}

/**
 * Claims of the ID-token assertion: like the access-token assertion, with
 * `target_audience` in place of `scope`; Google answers with an `id_token`.
 */
export function idTokenAssertionClaims(input: {
  issuer: string;
  audience: string;
  tokenUrl: string;
  nowMs: number;
}): JwtClaims {
  const iat = epochSeconds(input.nowMs);
  return {
    iss: input.issuer,
    aud: input.tokenUrl,
    target_audience: input.audience,
    iat,
    exp: iat + MAX_ASSERTION_LIFETIME_SECONDS,
  };
}

/** Header of a self-signed JWT (docs/protocol.md, the addendum): the seed's header plus `kid` = `private_key_id`. */
export function selfSignedHeader(key: ServiceAccountKey): JwtHeader {
  return { alg: 'RS256', typ: 'JWT', kid: key.privateKeyId };
}

/**
 * Claims of a self-signed JWT (docs/protocol.md, the addendum): `iss` = `sub` =
 * `client_email`, then `aud` (or, in the scope variant that Google's client
 * libraries also use, `scope`), `iat` and `exp` = `iat` + 3600.
 */
export function selfSignedClaims(input: {
  /** The service account's email. */
  email: string;
  target: { audience: string } | { scopes: readonly string[] };
  nowMs: number;
}): JwtClaims {
  const iat = epochSeconds(input.nowMs);
  const email = input.email;
  const claims: Record<string, string | number> = { iss: email, sub: email };
  if ('audience' in input.target) claims['aud'] = input.target.audience;
  else claims['scope'] = input.target.scopes.join(' ');
  claims['iat'] = iat;
  claims['exp'] = iat + MAX_ASSERTION_LIFETIME_SECONDS;
  return claims;
}
