import { MAX_LIFETIME_SECONDS } from '../../packages/wire/wire.js';
import { BrokerError } from '../errors.js';
import type { MintRequest } from '../request.js';
import type { ServiceAccountEntry } from './types.js';

/**
 * How long a token may be asked to live (docs/contract.md, "Long-lived
 * tokens"): Google's hour, unless a keyless account's `maxLifetimeSeconds`
 * raises it, up to 12 hours, which IAM grants only to accounts the
 * organisation policy `constraints/iam.allowServiceAccountCredentialLifetimeExtension` lists.
 */

/** The life of a Google access token unless an account may ask for more. */
export const DEFAULT_LIFETIME_SECONDS = 3600;

/** Reads an account entry's `maxLifetimeSeconds`: keyless only, an integer from 1 to 43200; 3600 when absent. */
export function compileMaxLifetime(
  value: unknown,
  keyless: boolean,
  problem: (text: string) => void,
): number {
  if (value === undefined) return DEFAULT_LIFETIME_SECONDS;
  if (!keyless) {
    problem(
      "is only for keyless accounts: tokens minted with a key live an hour at most (Google's token endpoint)",
    );
    return DEFAULT_LIFETIME_SECONDS;
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LIFETIME_SECONDS) {
    problem(`must be an integer from 1 to ${MAX_LIFETIME_SECONDS}`);
    return DEFAULT_LIFETIME_SECONDS;
  }
  return value;
}

/**
 * Checks a request's `lifetimeSeconds` against the account the policy
 * resolved it to, after the policy allowed it (so that a refusal tells
 * nothing to a caller who may not use the account). Throws
 * `invalid_request`: above the account's maximum; above an hour for a keyed
 * account or with a `subject` (Google's token endpoint mints those, for an
 * hour at most). A request is refused, never silently shortened.
 */
export function checkLifetime(request: MintRequest, account: ServiceAccountEntry): void {
  if (request.kind !== 'token' || request.lifetimeSeconds === undefined) return;
  const asked = request.lifetimeSeconds;
  if (asked <= DEFAULT_LIFETIME_SECONDS) return;
  if (account.mode === 'keyed') {
    throw refused(
      `"lifetimeSeconds" above ${DEFAULT_LIFETIME_SECONDS} is only for keyless accounts: a token minted with a key lives an hour at most`,
    );
  }
  if (request.subject !== undefined) {
    throw refused(
      `"lifetimeSeconds" above ${DEFAULT_LIFETIME_SECONDS} cannot be combined with "subject": Google's token endpoint mints delegated tokens for an hour at most`,
    );
  }
  if (asked > account.maxLifetimeSeconds) {
    throw refused(
      `"lifetimeSeconds" is above this account's maximum of ${account.maxLifetimeSeconds} seconds in the broker policy`,
    );
  }
}

function refused(text: string): BrokerError {
  return new BrokerError('invalid_request', text, { reason: 'lifetime_not_allowed' });
}
