import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AccessRequest,
  accountsForPurge,
  authorize,
  isAdmin,
  rateLimitFor,
} from '../../../shared/policy/evaluate.js';
import { compilePolicy } from '../../../shared/policy/load.js';

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

type Loose = { [K in keyof AccessRequest]?: AccessRequest[K] | undefined };
const req = (r: Loose): AccessRequest => {
  const merged: Record<string, unknown> = {
    caller: 'billing@acme.iam.gserviceaccount.com',
    operation: 'token',
    serviceAccount: SA,
    scopes: ['bq'],
    ...r,
  };
  for (const k of Object.keys(merged)) if (merged[k] === undefined) delete merged[k];
  return merged as unknown as AccessRequest;
};
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
      reason: 'unknown_target',
    });
    expect(authorize(policy, req({ scopes: ['x'] }))).toEqual({
      allowed: false,
      reason: 'no_matching_grant',
    });
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
    expect(authorize(policy, req({ tenant: 'blue' }))).toEqual({ allowed: false, reason: 'target_mismatch' });
  });

  it('answers admins, limits and purge targets', () => {
    expect(isAdmin(policy, 'ops@acme.iam.gserviceaccount.com')).toBe(true);
    expect(isAdmin(policy, 'billing@acme.iam.gserviceaccount.com')).toBe(false);
    expect(rateLimitFor(policy, 'billing@acme.iam.gserviceaccount.com')).toEqual({
      requests: 5,
      windowSeconds: 1,
    });
    expect(rateLimitFor(policy, 'other@acme.iam.gserviceaccount.com')).toEqual({
      requests: 600,
      windowSeconds: 60,
    });
    expect(accountsForPurge(policy, { tenant: 'blue' })).toEqual([BLUE]);
    expect(accountsForPurge(policy, { tenant: 'red' })).toEqual([]);
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
        if (d.allowed) {
          expect(d.account.email).toBe(`${tenant}@tenant-${tenant}.iam.gserviceaccount.com`);
          expect(d.account.mode).toBe(keyless.has(tenant) ? 'keyless' : 'keyed');
        }
      }),
      { numRuns: 500 },
    );
  });
});
