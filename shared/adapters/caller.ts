import { BrokerError } from '../errors.js';

/** The authenticated caller (docs/contract.md, "Principals"). */
export interface Caller {
  /**
   * Who the policy sees: a Google caller's canonical (lower-case) email, or
   * `NAME:SUB` for a caller of the policy issuer `NAME`. The policy's
   * `callers`, `admins` and `rateLimits`, the rate limiter, the audit line
   * and the 403's text all use it.
   */
  readonly principal: string;
  /** A Google caller's canonical email; undefined for an issuer's caller. */
  readonly email: string | undefined;
  readonly sub: string;
  readonly iss: string;
  /** The policy issuer's `name` for an issuer's caller; undefined for a Google caller. */
  readonly issuer: string | undefined;
}

/** Why a caller token was refused: the stable code for the audit line, the text for the caller. */
export type RefusalReason =
  | 'no_credential'
  | 'credential_too_large'
  | 'malformed'
  | 'signature_removed'
  | 'alg_not_allowed'
  | 'bad_signature'
  | 'unknown_key'
  | 'invalid_claim'
  | 'missing_claims'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'expired'
  | 'issued_in_future'
  | 'not_yet_valid'
  | 'lifetime_too_long'
  | 'claims_mismatch'
  | 'invalid_subject'
  | 'no_verified_email';

/** A `401 invalid_token` with its reason. */
export function refused(reason: RefusalReason, text: string): BrokerError {
  return new BrokerError('invalid_token', `Caller authentication failed: ${text}.`, { reason });
}
