import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../shared/errors.js';
import { decide } from '../../../shared/policy/evaluate.js';
import { issuerWarnings } from '../../../shared/policy/issuers.js';
import { compilePolicy } from '../../../shared/policy/load.js';
import type { CompiledPolicy } from '../../../shared/policy/types.js';
import type { MintRequest } from '../../../shared/request.js';

const SA = 'reporting@acme.iam.gserviceaccount.com';
const KEYLESS = 'nightly@acme.iam.gserviceaccount.com';
const GITHUB = {
  name: 'github',
  issuer: 'https://token.actions.githubusercontent.com',
  audiences: ['https://broker.acme.example'],
  claims: { repository_owner: 'acme', repository: 'acme/etl*' },
};
const ONPREM = {
  name: 'onprem',
  issuer: 'https://k8s.acme.internal',
  jwksUri: 'https://k8s.acme.internal/openid/v1/jwks',
  audiences: ['token-broker'],
};

const base = (extra: Record<string, unknown> = {}) => ({
  serviceAccounts: [
    { email: SA, key: 'projects/acme/secrets/reporting-key/versions/latest' },
    { email: KEYLESS, keyless: true, maxLifetimeSeconds: 21_600 },
  ],
  issuers: [GITHUB, ONPREM],
  grants: [
    { callers: ['github:repo:acme/etl:ref:refs/heads/main'], serviceAccounts: [SA], scopes: ['s'] },
    { callers: ['onprem:system:serviceaccount:batch:*'], serviceAccounts: [KEYLESS], scopes: ['s'] },
    { callers: ['*'], serviceAccounts: [SA], scopes: ['google-only'] },
    { callers: ['*@acme.com'], serviceAccounts: [SA], scopes: ['domain-only'] },
  ],
  admins: ['ops@acme.iam.gserviceaccount.com', 'github:repo:acme/ops:*'],
  rateLimit: { requests: 600, windowSeconds: 60 },
  rateLimits: {
    'github:repo:acme/*': { requests: 10, windowSeconds: 60 },
    'github:repo:acme/etl:*': { requests: 20, windowSeconds: 60 },
    'github:repo:acme/etl:ref:refs/heads/main': { requests: 30, windowSeconds: 60 },
  },
  ...extra,
});

function problems(raw: unknown, options: { allowLoopbackIssuers?: boolean } = {}): readonly string[] {
  try {
    compilePolicy(raw, options);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const token = (scopes: string[], account = SA): MintRequest => ({
  kind: 'token',
  for: { serviceAccount: account },
  scopes,
  subject: undefined,
  minLifetimeSeconds: 0,
  lifetimeSeconds: undefined,
});
const allowed = (p: CompiledPolicy, caller: string, scopes: string[], account = SA) =>
  decide(p, caller, { action: 'mint', request: token(scopes, account) }).outcome.allowed;

describe('trusted issuers in the policy', () => {
  it("compiles the contract's example: names, issuers, audiences, the claims guard and jwksUri", () => {
    const p = compilePolicy(base());
    expect(p.issuers.map((i) => [i.name, i.issuer, [...i.audiences], i.jwksUri])).toEqual([
      ['github', GITHUB.issuer, GITHUB.audiences, undefined],
      ['onprem', ONPREM.issuer, ONPREM.audiences, ONPREM.jwksUri],
    ]);
    const guard = p.issuers[0]!.claims;
    expect(guard.map((g) => g.claim)).toEqual(['repository_owner', 'repository']);
    expect(guard[0]!.matches('acme')).toBe(true);
    expect(guard[0]!.matches('acme-evil')).toBe(false);
    expect(guard[1]!.matches('acme/etl-nightly')).toBe(true);
    expect(guard[1]!.matches('evil/acme/etl')).toBe(false);
    expect(p.accounts.get(KEYLESS)).toMatchObject({ mode: 'keyless', maxLifetimeSeconds: 21_600 });
    expect(p.accounts.get(SA)).not.toHaveProperty('maxLifetimeSeconds');
  });

  it.each([
    [{ issuers: {} }, 'issuers: must be an array'],
    [{ issuers: [{ ...GITHUB, name: 'GitHub' }] }, 'issuers[0].name: must match ^[a-z][a-z0-9-]{0,30}$'],
    [
      { issuers: [{ ...GITHUB, name: 'a'.repeat(32) }] },
      'issuers[0].name: must match ^[a-z][a-z0-9-]{0,30}$',
    ],
    [{ issuers: [GITHUB, { ...ONPREM, name: 'github' }] }, 'issuers[1].name: "github" is used twice'],
    [
      { issuers: [GITHUB, { ...ONPREM, issuer: GITHUB.issuer }] },
      `issuers[1].issuer: ${GITHUB.issuer} is listed twice`,
    ],
    [
      { issuers: [{ ...GITHUB, issuer: 'https://accounts.google.com' }] },
      "issuers[0].issuer: is Google's own: Google callers need no issuer entry",
    ],
    [
      { issuers: [{ ...GITHUB, issuer: 'https://accounts.google.com/' }] },
      "issuers[0].issuer: is Google's own: Google callers need no issuer entry",
    ],
    [
      { issuers: [{ ...GITHUB, issuer: 'http://token.example.com' }] },
      'issuers[0].issuer: must be https (http only on 127.0.0.0/8, ::1 or localhost), got http://token.example.com',
    ],
    [
      { issuers: [{ ...GITHUB, issuer: 'http://127.0.0.1:8080' }] },
      'issuers[0].issuer: must be https (http on a loopback host only with BROKER_ALLOW_LOOPBACK_ISSUERS=true)',
    ],
    [
      { issuers: [{ ...GITHUB, issuer: 'https://user:pw@token.example.com' }] },
      'issuers[0].issuer: must not carry credentials',
    ],
    [
      { issuers: [{ ...GITHUB, issuer: 'https://token.example.com/?tenant=1' }] },
      'issuers[0].issuer: must have no query or fragment',
    ],
    [
      { issuers: [{ ...GITHUB, audiences: [] }] },
      'issuers[0].audiences: must be a non-empty array of strings',
    ],
    [
      { issuers: [{ ...GITHUB, audiences: ['*'] }] },
      'issuers[0].audiences[0]: must be a non-empty string without `*`',
    ],
    [
      { issuers: [{ ...GITHUB, claims: {} }] },
      'issuers[0].claims: must name at least one claim, or be left out',
    ],
    [
      { issuers: [{ ...GITHUB, claims: { repository_owner: 7 } }] },
      'issuers[0].claims.repository_owner: must be a non-empty string (a value ending in `*` matches by prefix)',
    ],
    [
      { issuers: [{ ...GITHUB, claims: { repository: 'acme/*/etl' } }] },
      'issuers[0].claims.repository: `*` is allowed only at the end, as a prefix',
    ],
    [
      { issuers: [{ ...ONPREM, jwksUri: 'http://k8s.acme.internal/jwks' }] },
      'issuers[0].jwksUri: must be https (http only on 127.0.0.0/8, ::1 or localhost), got http://k8s.acme.internal',
    ],
    [
      { issuers: [{ ...GITHUB, extra: 1 }] },
      'issuers[0]: unknown key "extra" (allowed: name, issuer, audiences, claims, jwksUri)',
    ],
    [
      { grants: [{ callers: ['gihub:repo:acme/etl:*'], serviceAccounts: [SA], scopes: ['s'] }] },
      'grants[0].callers[0]: "gihub:repo:acme/etl:*": no issuer in `issuers` is named "gihub"',
    ],
    [
      { grants: [{ callers: ['github:'], serviceAccounts: [SA], scopes: ['s'] }] },
      'grants[0].callers[0]: "github:" is not a principal (NAME:SUB, or a prefix ending in `*`)',
    ],
    [
      { grants: [{ callers: ['github:repo:*/etl'], serviceAccounts: [SA], scopes: ['s'] }] },
      'grants[0].callers[0]: "github:repo:*/etl": `*` is allowed only at the end of a principal, as a prefix',
    ],
    [{ admins: ['nobody:x'] }, 'admins[0]: "nobody:x": no issuer in `issuers` is named "nobody"'],
    [
      { rateLimits: { 'nobody:x': { requests: 1, windowSeconds: 1 } } },
      'rateLimits["nobody:x"]: "nobody:x": no issuer in `issuers` is named "nobody"',
    ],
    [
      { serviceAccounts: [{ email: SA, key: 'file:k', maxLifetimeSeconds: 7200 }] },
      `serviceAccounts[0] (${SA}).maxLifetimeSeconds: is only for keyless accounts: tokens minted with a key live an hour at most (Google's token endpoint)`,
    ],
    [
      { serviceAccounts: [{ email: KEYLESS, keyless: true, maxLifetimeSeconds: 43_201 }] },
      `serviceAccounts[0] (${KEYLESS}).maxLifetimeSeconds: must be an integer from 1 to 43200`,
    ],
  ])('reports %#', (extra, expected) => {
    expect(problems(base(extra))).toContain(expected);
  });

  it('takes an http issuer on loopback only with allowLoopbackIssuers, and never elsewhere', () => {
    const loopback = { issuers: [{ ...GITHUB, issuer: 'http://127.0.0.1:8080' }, ONPREM] };
    expect(compilePolicy(base(loopback), { allowLoopbackIssuers: true }).issuers[0]!.issuer).toBe(
      'http://127.0.0.1:8080',
    );
    expect(
      problems(base({ issuers: [{ ...GITHUB, issuer: 'http://10.0.0.1' }] }), { allowLoopbackIssuers: true }),
    ).toContain(
      'issuers[0].issuer: must be https (http only on 127.0.0.0/8, ::1 or localhost), got http://10.0.0.1',
    );
  });

  it('a policy without issuers compiles as before, with none', () => {
    const p = compilePolicy({
      serviceAccounts: [{ email: SA, key: 'file:k' }],
      grants: [{ callers: ['*'], serviceAccounts: [SA], scopes: ['s'] }],
    });
    expect(p.issuers).toEqual([]);
    expect(problems({ ...base(), issuers: undefined })).toContain(
      'grants[0].callers[0]: "github:repo:acme/etl:ref:refs/heads/main": no issuer in `issuers` is named "github"',
    );
  });
});

describe('principals in callers, admins and rateLimits', () => {
  const p = compilePolicy(base());
  const main = 'github:repo:acme/etl:ref:refs/heads/main';

  it('matches an exact principal, and a prefix ending in `*`', () => {
    expect(allowed(p, main, ['s'])).toBe(true);
    expect(allowed(p, 'github:repo:acme/etl:ref:refs/heads/feature', ['s'])).toBe(false);
    expect(allowed(p, 'onprem:system:serviceaccount:batch:nightly', ['s'], KEYLESS)).toBe(true);
    expect(allowed(p, 'onprem:system:serviceaccount:other:nightly', ['s'], KEYLESS)).toBe(false);
    // Another issuer's caller with the same subject is another principal.
    expect(allowed(p, 'onprem:repo:acme/etl:ref:refs/heads/main', ['s'])).toBe(false);
  });

  it('`*` and `*@domain` match Google callers only, never a principal: adding an issuer widens no grant', () => {
    expect(allowed(p, 'anyone@gmail.com', ['google-only'])).toBe(true);
    expect(allowed(p, main, ['google-only'])).toBe(false);
    expect(allowed(p, 'bob@acme.com', ['domain-only'])).toBe(true);
    expect(allowed(p, 'github:bob@acme.com', ['domain-only'])).toBe(false);
    fc.assert(
      fc.property(fc.constantFrom('github', 'onprem'), fc.string({ minLength: 1 }), (name, sub) => {
        const principal = `${name}:${sub}`;
        expect(allowed(p, principal, ['google-only'])).toBe(false);
        expect(allowed(p, principal, ['domain-only'])).toBe(false);
      }),
    );
  });

  it('admins: exact emails, and principals exact or by prefix', () => {
    const purge = (caller: string) =>
      decide(p, caller, { action: 'purge', request: { all: true } }).outcome.allowed;
    expect(purge('ops@acme.iam.gserviceaccount.com')).toBe(true);
    expect(purge('github:repo:acme/ops:ref:refs/heads/main')).toBe(true);
    expect(purge(main)).toBe(false);
    expect(purge('github:repo:acme/opsx:ref:refs/heads/main')).toBe(false);
  });

  it('rateLimits: the exact principal first, then the longest prefix, then the default', () => {
    const limit = (caller: string) => decide(p, caller, { action: 'mint', request: token(['s']) }).rateLimit;
    expect(limit(main)).toEqual({ requests: 30, windowSeconds: 60 });
    expect(limit('github:repo:acme/etl:pull_request')).toEqual({ requests: 20, windowSeconds: 60 });
    expect(limit('github:repo:acme/web:ref:refs/heads/main')).toEqual({ requests: 10, windowSeconds: 60 });
    expect(limit('onprem:system:serviceaccount:batch:nightly')).toEqual({ requests: 600, windowSeconds: 60 });
    expect(limit('billing@acme.iam.gserviceaccount.com')).toEqual({ requests: 600, windowSeconds: 60 });
  });

  it('warns about an issuer without a claims guard, and only then', () => {
    expect(issuerWarnings(p.issuers)).toBe(
      'issuers[1] (onprem) has no `claims` guard: every token that issuer signs for the listed audiences is a caller, and only the grants\' principal patterns tell them apart. Add a guard such as {"repository_owner": "your-org"} for GitHub.',
    );
    expect(issuerWarnings(p.issuers.slice(0, 1))).toBeUndefined();
  });
});
