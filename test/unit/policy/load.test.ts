import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../shared/errors.js';
import { compilePolicy } from '../../../shared/policy/load.js';

const SA = 'reporting@acme.iam.gserviceaccount.com';
const base = () => ({
  serviceAccounts: [
    { email: SA, key: 'projects/acme/secrets/reporting-key/versions/latest' },
    { email: 'blue@tenant-blue.iam.gserviceaccount.com', key: 'file:keys/blue.json', tenant: 'blue' },
  ],
  grants: [
    { callers: ['billing@acme.iam.gserviceaccount.com'], serviceAccounts: [SA], scopes: ['s'] },
  ] as unknown[],
  admins: ['ops@acme.iam.gserviceaccount.com'],
});

function problems(raw: unknown): readonly string[] {
  try {
    compilePolicy(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('compilePolicy', () => {
  it("accepts the contract's example", () => {
    const p = compilePolicy({
      ...base(),
      grants: [
        {
          callers: ['billing@acme.iam.gserviceaccount.com'],
          serviceAccounts: [SA],
          scopes: ['https://www.googleapis.com/auth/bigquery.readonly'],
        },
        {
          callers: ['sync-job@acme.iam.gserviceaccount.com'],
          serviceAccounts: [SA],
          scopes: ['c'],
          subjects: ['*@acme.com'],
        },
        {
          callers: ['platform@acme.iam.gserviceaccount.com'],
          tenants: ['*'],
          scopes: ['d'],
          operations: ['token', 'jwt', 'idtoken'],
          audiences: ['https://drive.googleapis.com/'],
        },
      ],
      rateLimit: { requests: 600, windowSeconds: 60 },
      rateLimits: { 'Billing@acme.iam.gserviceaccount.com': { requests: 10, windowSeconds: 1 } },
    });
    expect(p.accounts.get(SA)).toMatchObject({
      mode: 'keyed',
      key: 'projects/acme/secrets/reporting-key/versions/latest',
    });
    expect(p.tenants.get('blue')?.email).toBe('blue@tenant-blue.iam.gserviceaccount.com');
    expect(p.rateLimits.get('billing@acme.iam.gserviceaccount.com')).toEqual({
      requests: 10,
      windowSeconds: 1,
    });
    expect(Object.isFrozen(p)).toBe(true);
  });

  it.each([
    [
      { ...base(), extra: 1 },
      'policy: unknown key "extra" (allowed: $schema, serviceAccounts, grants, admins, rateLimit, rateLimits, issuers)',
    ],
    [{ ...base(), serviceAccounts: [] }, 'serviceAccounts: must not be empty'],
    [
      { ...base(), serviceAccounts: [{ email: 'nope', key: 'file:x' }] },
      'serviceAccounts[0].email: "nope" is not a valid email',
    ],
    [
      { ...base(), serviceAccounts: [{ email: SA, key: 'projects/acme/secrets/k' }] },
      'serviceAccounts[0].key: must be `projects/P/secrets/S/versions/V` (V = latest or a number) or `file:PATH`',
    ],
    [
      { ...base(), serviceAccounts: [{ email: SA, key: 'projects/acme/secrets/k/versions/0' }] },
      'serviceAccounts[0].key: must be `projects/P/secrets/S/versions/V` (V = latest or a number) or `file:PATH`',
    ],
    [
      { ...base(), serviceAccounts: [...base().serviceAccounts, { email: SA.toUpperCase(), key: 'file:y' }] },
      `serviceAccounts[2].email: ${SA} is listed twice`,
    ],
    [
      {
        ...base(),
        serviceAccounts: [
          ...base().serviceAccounts,
          { email: 'x@y.iam.gserviceaccount.com', key: 'file:y', tenant: 'blue' },
        ],
      },
      'serviceAccounts[2].tenant: tenant "blue" already maps to blue@tenant-blue.iam.gserviceaccount.com',
    ],
    [
      { ...base(), serviceAccounts: [{ email: SA, key: 'file:x', tenant: 'Blue!' }] },
      'serviceAccounts[0].tenant: must be a tenant id: lower-case letters, digits, "-" or "_", at most 63 characters',
    ],
    [
      { ...base(), grants: [{ callers: ['Bob@'], serviceAccounts: [SA], scopes: ['s'] }] },
      'grants[0].callers[0]: "Bob@" is not a valid email',
    ],
    [
      { ...base(), grants: [{ callers: ['a*@acme.com'], serviceAccounts: [SA], scopes: ['s'] }] },
      'grants[0].callers[0]: "a*@acme.com": `*` is allowed only alone or as `*@domain`',
    ],
    [
      { ...base(), grants: [{ callers: ['*'], scopes: ['s'] }] },
      'grants[0]: needs `serviceAccounts` or `tenants`',
    ],
    [
      {
        ...base(),
        grants: [{ callers: ['*'], serviceAccounts: ['typo@acme.iam.gserviceaccount.com'], scopes: ['s'] }],
      },
      'grants[0].serviceAccounts[0]: "typo@acme.iam.gserviceaccount.com" is not listed in serviceAccounts',
    ],
    [
      { ...base(), grants: [{ callers: ['*'], tenants: ['red'], scopes: ['s'] }] },
      'grants[0].tenants[0]: "red" is not listed in any serviceAccounts[].tenant or tenants',
    ],
    [
      { ...base(), grants: [{ callers: ['*'], serviceAccounts: [SA], scopes: ['a b'] }] },
      'grants[0].scopes[0]: must be one scope: no whitespace, no comma',
    ],
    [
      { ...base(), grants: [{ callers: ['*'], serviceAccounts: [SA] }] },
      'grants[0].scopes: a grant for `token` needs at least one scope',
    ],
    [
      { ...base(), grants: [{ callers: ['*'], serviceAccounts: [SA], scopes: ['s'], operations: ['mint'] }] },
      'grants[0].operations[0]: must be one of token, jwt, idtoken',
    ],
    [
      {
        ...base(),
        grants: [
          { callers: ['*'], serviceAccounts: [SA], operations: ['jwt'], audiences: ['http://x.example/'] },
        ],
      },
      'grants[0].audiences[0]: must be an https URL or `*`',
    ],
    [
      { ...base(), grants: [{ callers: [], serviceAccounts: [SA], scopes: ['s'] }] },
      'grants[0].callers: must not be empty',
    ],
    [
      { ...base(), admins: ['*@acme.com'] },
      'admins[0]: "*@acme.com" is not a valid email (admins are exact emails, or principals: NAME:SUB or a prefix ending in `*`)',
    ],
    [
      { ...base(), rateLimit: { requests: 0, windowSeconds: 60 } },
      'rateLimit.requests: must be a positive integer',
    ],
    [
      { ...base(), rateLimits: { '*': { requests: 1, windowSeconds: 1 } } },
      'rateLimits["*"]: keys must be exact caller emails, or principals (NAME:SUB or a prefix ending in `*`)',
    ],
    [
      JSON.parse(
        `{"serviceAccounts":[{"email":"${SA}","key":"file:x","__proto__":{"tenant":"x"}}],"grants":[]}`,
      ),
      'serviceAccounts[0]: the key "__proto__" is not allowed',
    ],
    [[], 'policy: must be a JSON object'],
  ])('reports %#: %s', (raw, expected) => {
    expect(problems(raw)).toContain(expected);
  });

  it('lists every problem at once', () => {
    expect(problems({ serviceAccounts: 'x', grants: {}, admins: [1] })).toEqual([
      'serviceAccounts: must be an array',
      'grants: must be an array',
      'admins[0]: 1 is not a valid email (admins are exact emails, or principals: NAME:SUB or a prefix ending in `*`)',
    ]);
  });
});

describe('compilePolicy and JSON null', () => {
  it('treats null as absent, as Terraform writes unset optional attributes', () => {
    const p = compilePolicy({
      serviceAccounts: [{ email: SA, key: 'file:k.json', tenant: null }],
      grants: [
        {
          callers: ['*'],
          serviceAccounts: [SA],
          scopes: ['s'],
          subjects: null,
          audiences: null,
          operations: null,
        },
      ],
      admins: [],
      rateLimit: null,
      rateLimits: null,
    });
    expect(p.accounts.get(SA)?.tenants).toEqual([]);
    expect(p.grants[0]?.subjects).toBeUndefined();
    expect(p.rateLimit).toBeUndefined();
  });
});
