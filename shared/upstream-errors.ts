import { BrokerError } from './errors.js';

/**
 * What Google's token endpoint errors mean and what to do, row by row from
 * the seed's error table (docs/protocol.md). Rows that share a code are told
 * apart by Google's description.
 */
export function describeUpstreamError(error: string, description: string | undefined): string {
  const d = description ?? '';
  const text = (() => {
    switch (error) {
      case 'unauthorized_client':
        return /method/i.test(d)
          ? 'domain-wide delegation was granted to the client email instead of the numeric client ID. In the Admin console, re-add the delegation with the service account’s numeric client ID.'
          : 'the service account is not authorized for domain-wide delegation, or not for these scopes. Authorize its client ID for exactly these scopes in the Admin console (Security > API controls > Domain-wide delegation); changes can take up to 24 hours to apply.';
      case 'access_denied':
        return 'one or more scopes are not authorized for delegation to the user in `subject`. Authorize these scopes for the service account in the Admin console, or ask for fewer scopes.';
      case 'admin_policy_enforced':
        return 'a Google Workspace admin policy blocks one of the requested scopes for this user. Ask the Workspace admin to allow the scopes, or ask for others.';
      case 'invalid_client':
        return 'the OAuth client or the JWT is malformed or misconfigured, or the service account email is wrong. Check that the stored key belongs to this service account and that the account exists.';
      case 'invalid_grant':
        if (/not a valid email/i.test(d)) {
          return 'the user in `subject` does not exist. Check the subject email, or create the user.';
        }
        if (/signature/i.test(d)) {
          return 'the assertion’s signature was rejected: the key does not belong to this service account, or it was deleted, disabled or has expired. Store a valid key for the account in its secret; the broker reads it again on the next request.';
        }
        if (/short-lived|timeframe|iat|exp/i.test(d)) {
          return 'the assertion’s time was rejected: the broker’s clock is off, or `exp` is more than 65 minutes after `iat`. Check the clock of the machine the broker runs on (NTP).';
        }
        return 'the grant was refused. Check the service account, its key and the subject.';
      case 'invalid_scope':
        return 'a scope is unknown or the list is empty (or the scopes were separated by commas). Check the requested scopes.';
      case 'disabled_client':
        return 'the key that signed the assertion is disabled. Enable it, or store another key for the account in its secret.';
      case 'org_internal':
        return 'the OAuth client belongs to a project restricted to users of its organization. Use a subject inside that organization.';
      default:
        return 'see the upstream_error code; check the service account, its key, the scopes and the subject.';
    }
  })();
  return `Google's token endpoint refused the request (${error}): ${text}`;
}

/** Whether Google rejected the assertion's signature (`invalid_grant` "Invalid JWT Signature."): a rotated or deleted key. */
export function isKeyRejected(err: unknown): boolean {
  if (!(err instanceof BrokerError) || err.upstreamError !== 'invalid_grant') return false;
  const body = err.upstreamBody as { error_description?: unknown } | undefined;
  return typeof body?.error_description === 'string' && /invalid jwt signature/i.test(body.error_description);
}

/**
 * The `error` code of an OAuth 2.0 error body (RFC 6749 §5.2), as Google's
 * token endpoint and STS answer: a short token, or `http_<status>` when the
 * body has none a log line could safely carry.
 */
export function oauthErrorCode(body: Record<string, unknown> | undefined, status: number): string {
  const error = body?.['error'];
  return typeof error === 'string' && /^[\w.-]{1,64}$/.test(error) ? error : `http_${status}`;
}
