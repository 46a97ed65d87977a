import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, type Outcome } from '../../../shared/policy/evaluate.js';
import { compilePolicy } from '../../../shared/policy/load.js';
import type { CompiledPolicy, Operation } from '../../../shared/policy/types.js';
import type { MintRequest } from '../../../shared/request.js';

const SA = 'reporting@acme.iam.gserviceaccount.com';
const BLUE = 'blue@tenant-blue.iam.gserviceaccount.com';
const GREEN = 'green@tenant-green.iam.gserviceaccount.com';
const policy = compilePolicy({
  serviceAccounts: [
    { email: SA, key: 'projects/acme/secrets/reporting-key/versions/latest' },
    { email: BLUE, key: 'file:keys/blue.json', tenant: 'blue' },
    { email: GREEN, key: 'file:keys/green.json', tenant: 'green' },
  ],
  grants: [
    { callers: ['billing@acme.iam.gserviceaccount.com'], serviceAccounts: [SA], scopes: ['bq', 'gcs'] },
    {
      callers: ['sync-job@acme.iam.gserviceaccount.com'],
      serviceAccounts: [SA],
      scopes: ['cal'],
      subjects: ['*@acme.com'],
    },
    {
      callers: ['*@platform.iam.gserviceaccount.com'],
      tenants: ['*'],
      scopes: ['drive'],
      operations: ['token', 'jwt', 'idtoken'],
      audiences: ['https://drive.googleapis.com/'],
    },
    { callers: ['blue-app@acme.iam.gserviceaccount.com'], tenants: ['blue'], scopes: ['drive'] },
  ],
  admins: ['ops@acme.iam.gserviceaccount.com'],
  rateLimit: { requests: 600, windowSeconds: 60 },
  rateLimits: { 'billing@acme.iam.gserviceaccount.com': { requests: 5, windowSeconds: 1 } },
});

/** A request as the tests spell it: the caller, the operation and the fields of a mint request. */
interface Loose {
  caller?: string;
  operation?: Operation;
  serviceAccount?: string | undefined;
  tenant?: string;
  scopes?: string[];
  subject?: string;
  audience?: string;
}
const mint = (r: Loose): MintRequest => {
  const kind = r.operation ?? 'token';
  const account = r.tenant !== undefined ? { tenant: r.tenant } : { serviceAccount: r.serviceAccount ?? SA };
  const base = { for: account, scopes: r.scopes ?? ['bq'], minLifetimeSeconds: 0 };
  return kind === 'token'
    ? { kind, ...base, subject: r.subject }
    : kind === 'jwt'
      ? { kind, ...base, audience: r.audience }
      : { kind, ...base, audience: r.audience ?? '' };
};
const authorize = (p: CompiledPolicy, r: Loose): Outcome =>
  decide(p, r.caller ?? 'billing@acme.iam.gserviceaccount.com', { action: 'mint', request: mint(r) }).outcome;
const req = (r: Loose) => r;
const allowed = (r: Loose) => authorize(policy, req(r)).allowed;

describe('authorize', () => {
  it('allows what one grant covers on every dimension', () => {
    expect(authorize(policy, req({}))).toEqual({ allowed: true, account: policy.accounts.get(SA), grant: 0 });
    expect(allowed({ scopes: ['bq', 'gcs'] })).toBe(true);
    expect(allowed({ scopes: [] })).toBe(true);
  });

  it('denies by default', () => {
    expect(allowed({ caller: 'stranger@acme.iam.gserviceaccount.com' })).toBe(false);
    expect(allowed({ scopes: ['bq', 'cloud-platform'] })).toBe(false);
    expect(allowed({ operation: 'jwt' })).toBe(false);
    expect(authorize(policy, req({ serviceAccount: 'ghost@acme.iam.gserviceaccount.com' }))).toEqual({
      allowed: false,
      reason: 'unknown_account',
    });
    expect(authorize(policy, req({ scopes: ['x'] }))).toEqual({
      allowed: false,
      reason: 'scope_not_granted',
    });
  });

  it('names the dimension that failed, for the grant that came closest', () => {
    const reason = (r: Loose) => {
      const o = authorize(policy, r);
      return o.allowed ? 'allowed' : o.reason;
    };
    expect(reason({ caller: 'stranger@acme.iam.gserviceaccount.com' })).toBe('caller_not_granted');
    // billing has a grant, but for another account: to billing, no grant for this tenant.
    expect(reason({ tenant: 'blue', scopes: ['drive'] })).toBe('caller_not_granted');
    expect(reason({ operation: 'jwt', scopes: [] })).toBe('operation_not_granted');
    expect(reason({ scopes: ['bq', 'cloud-platform'] })).toBe('scope_not_granted');
    expect(reason({ subject: 'alice@acme.com' })).toBe('subject_not_granted');
    const platform = { caller: 'svc@platform.iam.gserviceaccount.com', tenant: 'blue', scopes: [] };
    expect(reason({ ...platform, operation: 'idtoken', audience: 'https://evil.example/' })).toBe(
      'audience_not_granted',
    );
    // sync-job's grant needs a subject: a request without one fails there, past the scopes.
    expect(reason({ caller: 'sync-job@acme.iam.gserviceaccount.com', scopes: ['cal'] })).toBe(
      'subject_not_granted',
    );
  });

  it('matches subjects only where a grant lists them', () => {
    const job = { caller: 'sync-job@acme.iam.gserviceaccount.com', scopes: ['cal'] };
    expect(allowed({ ...job, subject: 'alice@acme.com' })).toBe(true);
    expect(allowed({ ...job })).toBe(false); // a grant with subjects needs a subject
    expect(allowed({ ...job, subject: 'alice@evil.com' })).toBe(false);
    expect(allowed({ ...job, subject: 'alice@sub.acme.com' })).toBe(false);
    expect(allowed({ ...job, subject: '*@acme.com' })).toBe(false); // request values are never patterns
    expect(allowed({ subject: 'alice@acme.com' })).toBe(false); // a grant without subjects refuses one
  });

  it('matches audiences for jwt and idtoken, and never constrains token by them', () => {
    const platform = {
      caller: 'svc@platform.iam.gserviceaccount.com',
      serviceAccount: undefined,
      tenant: 'blue',
      scopes: [] as string[],
    };
    expect(allowed({ ...platform, operation: 'jwt', audience: 'https://drive.googleapis.com/' })).toBe(true);
    expect(allowed({ ...platform, operation: 'idtoken', audience: 'https://evil.example/' })).toBe(false);
    expect(allowed({ ...platform, operation: 'token', scopes: ['drive'] })).toBe(true);
    expect(
      allowed({
        caller: 'blue-app@acme.iam.gserviceaccount.com',
        serviceAccount: undefined,
        tenant: 'blue',
        operation: 'jwt',
        scopes: [],
        audience: 'https://drive.googleapis.com/',
      }),
    ).toBe(false);
  });

  it('keeps tenants and service accounts apart', () => {
    const blueApp = { caller: 'blue-app@acme.iam.gserviceaccount.com', scopes: ['drive'] };
    expect(allowed({ ...blueApp, serviceAccount: undefined, tenant: 'blue' })).toBe(true);
    expect(allowed({ ...blueApp, serviceAccount: undefined, tenant: 'green' })).toBe(false);
    expect(allowed({ ...blueApp, serviceAccount: BLUE })).toBe(false); // a tenant grant never serves a request by serviceAccount
  });

  it('answers admins, limits and purge targets in the same decision', () => {
    const purge = (caller: string, request: { tenant: string } | { all: true }) =>
      decide(policy, caller, { action: 'purge', request });
    expect(purge('ops@acme.iam.gserviceaccount.com', { all: true }).outcome).toEqual({
      allowed: true,
      purge: 'all',
    });
    expect(purge('billing@acme.iam.gserviceaccount.com', { all: true })).toEqual({
      rateLimit: { requests: 5, windowSeconds: 1 },
      outcome: { allowed: false, reason: 'not_admin' },
    });
    expect(purge('other@acme.iam.gserviceaccount.com', { all: true }).rateLimit).toEqual({
      requests: 600,
      windowSeconds: 60,
    });
    expect(purge('ops@acme.iam.gserviceaccount.com', { tenant: 'blue' }).outcome).toEqual({
      allowed: true,
      purge: [BLUE],
    });
    expect(purge('ops@acme.iam.gserviceaccount.com', { tenant: 'red' }).outcome).toEqual({
      allowed: false,
      reason: 'unknown_account',
    });
  });

  it('never gives a tenant-A caller a token of tenant B, keyed or keyless (property)', () => {
    const tenantIds = ['a', 'b', 'c', 'd'];
    // Tenants c and d are keyless: IAM mints for them, with no key.
    const keyless = new Set(['c', 'd']);
    const arb = fc.record({
      grants: fc.array(
        fc.record({
          caller: fc.integer({ min: 0, max: 3 }),
          tenants: fc.subarray(tenantIds, { minLength: 1 }),
        }),
        { minLength: 1, maxLength: 6 },
      ),
      caller: fc.integer({ min: 0, max: 3 }),
      tenant: fc.constantFrom(...tenantIds),
    });
    fc.assert(
      fc.property(arb, ({ grants, caller, tenant }) => {
        const p = compilePolicy({
          serviceAccounts: tenantIds.map((t) => ({
            email: `${t}@tenant-${t}.iam.gserviceaccount.com`,
            ...(keyless.has(t) ? { keyless: true } : { key: `file:${t}.json` }),
            tenant: t,
          })),
          grants: grants.map((g) => ({
            callers: [`caller${g.caller}@p.iam.gserviceaccount.com`],
            tenants: g.tenants,
            scopes: ['s'],
          })),
        });
        const d = authorize(p, {
          caller: `caller${caller}@p.iam.gserviceaccount.com`,
          operation: 'token',
          tenant,
          scopes: ['s'],
        });
        const granted = grants.some((g) => g.caller === caller && g.tenants.includes(tenant));
        expect(d.allowed).toBe(granted);
        if (d.allowed && 'account' in d) {
          expect(d.account.email).toBe(`${tenant}@tenant-${tenant}.iam.gserviceaccount.com`);
          expect(d.account.mode).toBe(keyless.has(tenant) ? 'keyless' : 'keyed');
        }
      }),
      { numRuns: 500 },
    );
  });
});
