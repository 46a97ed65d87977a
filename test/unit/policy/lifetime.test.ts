import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../../shared/errors.js';
import { requiredLifetimeSeconds } from '../../../shared/lifetime.js';
import { checkLifetime } from '../../../shared/policy/lifetime.js';
import { compilePolicy } from '../../../shared/policy/load.js';
import { parseJwtRequest, parseTokenRequest } from '../../../shared/request.js';

const KEYED = 'keyed@p.iam.gserviceaccount.com';
const LONG = 'long@p.iam.gserviceaccount.com';
const PLAIN = 'plain@p.iam.gserviceaccount.com';
const policy = compilePolicy({
  serviceAccounts: [
    { email: KEYED, key: 'file:k.json' },
    { email: LONG, keyless: true, maxLifetimeSeconds: 43_200 },
    { email: PLAIN, keyless: true },
  ],
  grants: [],
});

const ask = (account: string, body: Record<string, unknown>) => () =>
  checkLifetime(
    parseTokenRequest({ serviceAccount: account, scopes: ['s'], ...body }),
    policy.accounts.get(account)!,
  );

function refusal(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('invalid_request');
    expect((err as BrokerError).reason).toBe('lifetime_not_allowed');
    return (err as BrokerError).message;
  }
  throw new Error('expected a refusal');
}

describe('checkLifetime: an account allows what its policy entry says, and nothing is silently shortened', () => {
  it('allows up to an hour on any account, and up to maxLifetimeSeconds on a keyless one', () => {
    for (const account of [KEYED, LONG, PLAIN]) {
      expect(ask(account, {})).not.toThrow();
      expect(ask(account, { lifetimeSeconds: 3600 })).not.toThrow();
    }
    expect(ask(LONG, { lifetimeSeconds: 21_600 })).not.toThrow();
    expect(ask(LONG, { lifetimeSeconds: 43_200 })).not.toThrow();
    expect(() =>
      checkLifetime(parseJwtRequest({ serviceAccount: KEYED, scopes: ['s'] }), policy.accounts.get(KEYED)!),
    ).not.toThrow();
  });

  it('refuses more than an hour on a keyed account, with a subject, or past the account maximum', () => {
    expect(refusal(ask(KEYED, { lifetimeSeconds: 3601 }))).toMatch(/only for keyless accounts/);
    expect(refusal(ask(LONG, { lifetimeSeconds: 7200, subject: 'alice@acme.com' }))).toMatch(
      /cannot be combined with "subject"/,
    );
    expect(refusal(ask(PLAIN, { lifetimeSeconds: 3601 }))).toMatch(/maximum of 3600 seconds/);
  });
});

describe('requiredLifetimeSeconds: the life a cached token needs left', () => {
  it('is the minimum alone without lifetimeSeconds, else the lifetime less the skew', () => {
    expect(requiredLifetimeSeconds(0, undefined, 300)).toBe(0);
    expect(requiredLifetimeSeconds(600, undefined, 300)).toBe(600);
    expect(requiredLifetimeSeconds(0, 21_600, 300)).toBe(21_300);
    expect(requiredLifetimeSeconds(3000, 3200, 300)).toBe(3000);
  });
});
