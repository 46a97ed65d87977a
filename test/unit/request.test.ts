import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../shared/errors.js';
import {
  parseIdTokenRequest,
  parseJwtRequest,
  parsePurgeRequest,
  parseTokenRequest,
} from '../../shared/request.js';

const SA = 'reporting@acme.iam.gserviceaccount.com';
const SCOPE = 'https://www.googleapis.com/auth/bigquery.readonly';

function rejects(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('invalid_request');
    expect((err as BrokerError).message).toMatch(message);
    return;
  }
  throw new Error('expected invalid_request');
}

describe('parseTokenRequest', () => {
  it('normalises scopes: drops duplicates, ignores order', () => {
    const r = parseTokenRequest({ serviceAccount: SA, scopes: ['b', 'a', 'b'] });
    expect(r).toEqual({
      kind: 'token',
      for: { serviceAccount: SA },
      scopes: ['a', 'b'],
      subject: undefined,
      minLifetimeSeconds: 0,
      lifetimeSeconds: undefined,
    });
  });

  it('canonicalises emails to lower case', () => {
    const r = parseTokenRequest({
      serviceAccount: SA.toUpperCase(),
      scopes: [SCOPE],
      subject: 'Alice@Acme.com',
    });
    expect(r.for).toEqual({ serviceAccount: SA });
    expect(r.subject).toBe('alice@acme.com');
  });

  it.each([
    [{ scopes: [SCOPE] }, /exactly one of "serviceAccount"/],
    [{ serviceAccount: SA, tenant: 'blue', scopes: [SCOPE] }, /exactly one of "serviceAccount"/],
    [{ serviceAccount: SA }, /"scopes" is required/],
    [{ serviceAccount: SA, scopes: [] }, /non-empty array/],
    [{ serviceAccount: SA, scopes: 'a b' }, /non-empty array/],
    [
      { serviceAccount: SA, scopes: [`${SCOPE} https://www.googleapis.com/auth/cloud-platform`] },
      /scopes\[0\]/,
    ],
    [{ serviceAccount: SA, scopes: [`${SCOPE},https://www.googleapis.com/auth/cloud-platform`] }, /no comma/],
    [{ serviceAccount: SA, scopes: [`${SCOPE}\t`] }, /scopes\[0\]/],
    [{ serviceAccount: SA, scopes: [42] }, /scopes\[0\]/],
    [{ serviceAccount: SA, scopes: [SCOPE], subject: '*@acme.com' }, /"subject"/],
    [{ serviceAccount: SA, scopes: [SCOPE], subject: 'alice@acme.com,bob@evil.com' }, /"subject"/],
    [{ serviceAccount: SA, scopes: [SCOPE], subject: 'alice@acme.com.' }, /"subject"/],
    [{ serviceAccount: SA, scopes: [SCOPE], subject: 'alice@acme.com ' }, /"subject"/],
    [{ serviceAccount: `${SA} `, scopes: [SCOPE] }, /"serviceAccount"/],
    [{ serviceAccount: 'reporting@acme.iam.gserviceaccount.com.', scopes: [SCOPE] }, /"serviceAccount"/],
    [{ serviceAccount: 'reporting@acme.iam.g\u0455erviceaccount.com', scopes: [SCOPE] }, /"serviceAccount"/],
    [{ serviceAccount: '\u212Aeys@acme.iam.gserviceaccount.com', scopes: [SCOPE] }, /"serviceAccount"/],
    [{ tenant: 'Blue', scopes: [SCOPE] }, /"tenant"/],
    [{ tenant: '../blue', scopes: [SCOPE] }, /"tenant"/],
    [{ serviceAccount: SA, scopes: [SCOPE], minLifetimeSeconds: 3301 }, /minLifetimeSeconds/],
    [{ serviceAccount: SA, scopes: [SCOPE], minLifetimeSeconds: -1 }, /minLifetimeSeconds/],
    [{ serviceAccount: SA, scopes: [SCOPE], minLifetimeSeconds: 1.5 }, /minLifetimeSeconds/],
    [{ serviceAccount: SA, scopes: [SCOPE], minLifetimeSeconds: '600' }, /minLifetimeSeconds/],
    [{ serviceAccount: SA, scope: SCOPE }, /unknown field "scope"/],
    [
      JSON.parse(`{"serviceAccount":"${SA}","scopes":["${SCOPE}"],"__proto__":{"admin":true}}`),
      /unknown field "__proto__"/,
    ],
    [[], /JSON object/],
    [null, /JSON object/],
    ['x', /JSON object/],
  ])('rejects %j', (body, message) => rejects(() => parseTokenRequest(body), message));

  it('accepts the bounds of minLifetimeSeconds', () => {
    expect(
      parseTokenRequest({ serviceAccount: SA, scopes: [SCOPE], minLifetimeSeconds: 3300 }).minLifetimeSeconds,
    ).toBe(3300);
    expect(parseTokenRequest({ tenant: 'blue', scopes: [SCOPE], minLifetimeSeconds: 0 }).for).toEqual({
      tenant: 'blue',
    });
  });
});

describe('lifetimeSeconds (docs/contract.md, "Long-lived tokens")', () => {
  it('takes an integer from 1 to 43200 on token requests; whether the account allows it is decided later', () => {
    const asked = (lifetimeSeconds: unknown) =>
      parseTokenRequest({ serviceAccount: SA, scopes: [SCOPE], lifetimeSeconds }).lifetimeSeconds;
    expect(asked(1)).toBe(1);
    expect(asked(21_600)).toBe(21_600);
    expect(asked(43_200)).toBe(43_200);
    for (const bad of [0, -1, 43_201, 3600.5, '3600', null, true])
      rejects(() => asked(bad), /"lifetimeSeconds" must be an integer from 1 to 43200/);
  });

  it('refuses a minimum above the lifetime, and lifetimeSeconds on jwt and idtoken', () => {
    rejects(
      () =>
        parseTokenRequest({
          serviceAccount: SA,
          scopes: [SCOPE],
          lifetimeSeconds: 600,
          minLifetimeSeconds: 900,
        }),
      /"minLifetimeSeconds" cannot be more than "lifetimeSeconds"/,
    );
    rejects(
      () => parseJwtRequest({ serviceAccount: SA, scopes: [SCOPE], lifetimeSeconds: 600 }),
      /unknown field/,
    );
    rejects(
      () => parseIdTokenRequest({ serviceAccount: SA, audience: 'https://x.example', lifetimeSeconds: 600 }),
      /unknown field/,
    );
  });
});

describe('parseJwtRequest / parseIdTokenRequest / parsePurgeRequest', () => {
  it('takes exactly one of audience or scopes for jwt', () => {
    expect(
      parseJwtRequest({ serviceAccount: SA, audience: 'https://firestore.googleapis.com/' }).audience,
    ).toBe('https://firestore.googleapis.com/');
    expect(parseJwtRequest({ serviceAccount: SA, scopes: [SCOPE] }).scopes).toEqual([SCOPE]);
    rejects(() => parseJwtRequest({ serviceAccount: SA }), /exactly one of "audience"/);
    rejects(
      () => parseJwtRequest({ serviceAccount: SA, scopes: [SCOPE], audience: 'https://a.example/' }),
      /exactly one/,
    );
    rejects(
      () => parseJwtRequest({ serviceAccount: SA, audience: 'http://firestore.googleapis.com/' }),
      /https URL/,
    );
  });

  it('requires an https audience for idtoken', () => {
    expect(parseIdTokenRequest({ tenant: 'blue', audience: 'https://svc.example.com' })).toMatchObject({
      audience: 'https://svc.example.com',
    });
    rejects(() => parseIdTokenRequest({ tenant: 'blue' }), /"audience" is required/);
    rejects(() => parseIdTokenRequest({ tenant: 'blue', audience: 'javascript:alert(1)' }), /https URL/);
    rejects(() => parseIdTokenRequest({ tenant: 'blue', audience: 'https://a.example/ x' }), /https URL/);
  });

  it('takes one purge selector', () => {
    expect(parsePurgeRequest({ all: true })).toEqual({ all: true });
    expect(parsePurgeRequest({ tenant: 'blue' })).toEqual({ tenant: 'blue' });
    rejects(() => parsePurgeRequest({ all: 'yes' }), /"all" must be true/);
    rejects(() => parsePurgeRequest({ all: true, tenant: 'blue' }), /give one of/);
    rejects(() => parsePurgeRequest({}), /exactly one/);
  });
});
