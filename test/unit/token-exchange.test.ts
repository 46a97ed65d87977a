import { describe, expect, it } from 'vitest';
import { parseTokenExchange, tokenExchangeError } from '../../functions/doors/token-exchange.js';
import { stsAudience } from '../../packages/wire/rules.js';
import { BrokerError } from '../../shared/errors.js';

const FORM = 'application/x-www-form-urlencoded';
const SA = 'reporting@acme.iam.gserviceaccount.com';
const base = {
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
  subject_token: 'eyJ.header.sig\n',
  subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
  audience: `//token-broker/serviceAccounts/${SA}`,
  scope: 'https://www.googleapis.com/auth/b https://www.googleapis.com/auth/a',
};
const body = (fields: Record<string, string>, extra = '') =>
  Buffer.from(new URLSearchParams(fields).toString() + extra);
const code = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return (err as BrokerError).code;
  }
  return 'ok';
};

describe('token exchange form (RFC 8693)', () => {
  it('reads a service-account audience into a token call; the subject token is trimmed, extra parameters ignored', () => {
    const call = parseTokenExchange(FORM, body({ ...base, options: '{"userProject":"x"}' }));
    expect(call).toEqual({
      action: 'token',
      credential: { subjectToken: 'eyJ.header.sig' },
      body: {
        serviceAccount: SA,
        scopes: ['https://www.googleapis.com/auth/b', 'https://www.googleapis.com/auth/a'],
      },
    });
  });

  it('reads tenants and domain-wide delegation subjects', () => {
    expect(
      parseTokenExchange(
        `${FORM}; charset=UTF-8`,
        body({ ...base, audience: '//token-broker/tenants/blue/subjects/alice@acme.com' }),
      ).body,
    ).toEqual({
      tenant: 'blue',
      subject: 'alice@acme.com',
      scopes: base.scope.split(' '),
    });
    expect(stsAudience({ tenant: 'blue' }, 'alice@acme.com')).toBe(
      '//token-broker/tenants/blue/subjects/alice@acme.com',
    );
    expect(stsAudience({ serviceAccount: SA })).toBe(base.audience);
  });

  it.each([
    ['a JSON body', 'application/json', body(base), 'unsupported_media_type'],
    ['no content type', undefined, body(base), 'unsupported_media_type'],
    [
      'another grant type',
      FORM,
      body({ ...base, grant_type: 'client_credentials' }),
      'unsupported_grant_type',
    ],
    ['no grant type', FORM, body({ ...base, grant_type: '' }), 'invalid_request'],
    [
      'a repeated audience',
      FORM,
      body(base, `&audience=${encodeURIComponent(base.audience)}`),
      'invalid_request',
    ],
    ['a blank subject token', FORM, body({ ...base, subject_token: ' \n' }), 'invalid_request'],
    [
      'an access-token subject',
      FORM,
      body({ ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' }),
      'invalid_request',
    ],
    [
      'another requested token type',
      FORM,
      body({ ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:id_token' }),
      'invalid_request',
    ],
    [
      'a Google STS audience',
      FORM,
      body({
        ...base,
        audience: '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x',
      }),
      'invalid_request',
    ],
    [
      'a path trick in the audience',
      FORM,
      body({ ...base, audience: `//token-broker/serviceAccounts/${SA}/../tenants/blue` }),
      'invalid_request',
    ],
  ])('refuses %s', (_, type, raw, expected) => {
    expect(code(() => parseTokenExchange(type, raw))).toBe(expected);
  });

  it("maps a bad caller token to invalid_grant and a denial to invalid_target, with the denial's text", () => {
    const grant = tokenExchangeError(
      new BrokerError('invalid_token', 'Caller authentication failed: expired.'),
    ) as BrokerError;
    expect([grant.code, grant.status]).toEqual(['invalid_grant', 400]);
    const a = tokenExchangeError(new BrokerError('access_denied', 'the one text')) as BrokerError;
    expect([a.code, a.status, a.message]).toEqual(['invalid_target', 400, 'the one text']);
    const other = new BrokerError('upstream_unavailable', 'down');
    expect(tokenExchangeError(other)).toBe(other);
  });
});

describe('a form with no scope', () => {
  it("asks for cloud-platform, as Google's STS does (Python's google-auth sends no scope when none was asked)", () => {
    const { scope: _, ...without } = base;
    for (const form of [body(without), body({ ...base, scope: '' }), body({ ...base, scope: '   ' })]) {
      expect(parseTokenExchange(FORM, form).body).toMatchObject({
        scopes: ['https://www.googleapis.com/auth/cloud-platform'],
      });
    }
  });
});

describe('the form parameter cap (docs/contract.md, "Limits")', () => {
  const padded = (total: number) => {
    const extra = Array.from({ length: total - Object.keys(base).length }, (_, i) => `&x${i}=1`).join('');
    return body(base, extra);
  };
  it('takes 100 parameters and refuses 101, empty pairs not counted', () => {
    expect(code(() => parseTokenExchange(FORM, padded(100)))).toBe('ok');
    expect(code(() => parseTokenExchange(FORM, Buffer.from(`${padded(100)}&&&&`)))).toBe('ok');
    expect(code(() => parseTokenExchange(FORM, padded(101)))).toBe('invalid_request');
  });
  it('refuses 32,768 repeated names in linear time', () => {
    const started = performance.now();
    expect(code(() => parseTokenExchange(FORM, Buffer.from('a&'.repeat(32_768))))).toBe('invalid_request');
    expect(performance.now() - started).toBeLessThan(50);
  });
});
