/**
 * The multi-tenant figures of `npm run bench` (docs/performance.md): a
 * policy of 500 tenants, and one of 5,000 on shared accounts, loaded and
 * decided in this process by the broker's own code; and the policies that
 * the broker processes of the bench serve bounded tenant tokens with.
 */
import { decide } from '../../shared/policy/evaluate.js';
import { compilePolicy } from '../../shared/policy/load.js';
import type { CompiledPolicy } from '../../shared/policy/types.js';
import { parseTokenRequest } from '../../shared/request.js';
import { examplePolicy, PLATFORM } from '../local-stack.js';

/** One keyless account that serves every tenant not mapped elsewhere, bounded per tenant. */
export const SHARED_TENANTS = 'tenants@acme.iam.gserviceaccount.com';
export const GCS_RW = 'https://www.googleapis.com/auth/devstorage.read_write';
const BUCKET = 'acme-tenants';

/** A grant that bounds each tenant's token to its own prefix of one bucket. */
function boundedGrant(tenants: readonly string[]): Record<string, unknown> {
  return {
    callers: [PLATFORM],
    tenants,
    scopes: [GCS_RW],
    accessBoundary: [
      {
        resource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
        permissions: ['inRole:roles/storage.objectAdmin'],
        condition: `resource.name.startsWith('projects/_/buckets/${BUCKET}/objects/{tenant}/')`,
      },
    ],
  };
}

/**
 * The contract's example policy plus the shared-tenant account and its
 * bounded grant. The example's unbounded `tenants: ["*"]` grant now names its
 * three tenants: with a `*` account in the policy it would reach every other
 * tenant too, which the safety rule refuses.
 */
export function sharedTenantPolicy(): Record<string, unknown> {
  const p = examplePolicy() as { serviceAccounts: unknown[]; grants: Array<Record<string, unknown>> };
  const grants = p.grants.map((g) =>
    Array.isArray(g['tenants']) && g['tenants'].includes('*')
      ? { ...g, tenants: ['blue', 'green', 'violet'] }
      : g,
  );
  return {
    ...p,
    serviceAccounts: [...p.serviceAccounts, { email: SHARED_TENANTS, keyless: true, tenants: ['*'] }],
    grants: [...grants, boundedGrant(['*'])],
  };
}

/** The policies the scale row compares: what one platform grows into. */
function scalePolicies(): Array<{ name: string; raw: Record<string, unknown>; tenants: string[] }> {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `tenant-${i}`);
  const one = ids(1);
  const five = ids(500);
  const many = ids(5000);
  const account = (i: number) => `tenant-${i}@tenants-${i}.iam.gserviceaccount.com`;
  return [
    {
      name: 'one tenant (the reference)',
      raw: {
        serviceAccounts: [{ email: account(0), keyless: true, tenant: one[0] }],
        grants: [{ callers: [PLATFORM], tenants: one, scopes: [GCS_RW] }],
      },
      tenants: one,
    },
    {
      name: '500 tenants, an account and a grant each',
      raw: {
        serviceAccounts: five.map((t, i) => ({ email: account(i), keyless: true, tenant: t })),
        grants: five.map((t) => ({ callers: [PLATFORM], tenants: [t], scopes: [GCS_RW] })),
      },
      tenants: five,
    },
    {
      name: '5,000 tenants on 10 shared accounts, a bounded grant each',
      raw: {
        serviceAccounts: Array.from({ length: 10 }, (_, a) => ({
          email: account(a),
          keyless: true,
          tenants: many.slice(a * 500, (a + 1) * 500),
        })),
        grants: Array.from({ length: 10 }, (_, a) => boundedGrant(many.slice(a * 500, (a + 1) * 500))),
      },
      tenants: many,
    },
  ];
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Load time (median of `runs`) and one decision's time (p50, p99 over `decisions` random tenants), per policy. */
export function policyScale(
  runs: number,
  decisions: number,
): Array<{
  name: string;
  bytes: number;
  loadMs: number;
  decideUs: { p50: number; p99: number };
}> {
  return scalePolicies().map(({ name, raw, tenants }) => {
    const text = JSON.stringify(raw);
    const loads: number[] = [];
    let policy: CompiledPolicy | undefined;
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      policy = compilePolicy(JSON.parse(text));
      loads.push(performance.now() - t);
    }
    const compiled = policy as CompiledPolicy;
    const requests = Array.from({ length: 1000 }, (_, i) =>
      parseTokenRequest({ tenant: tenants[(i * 7919) % tenants.length], scopes: [GCS_RW] }),
    );
    for (const r of requests) decide(compiled, PLATFORM, { action: 'mint', request: r }); // warm-up
    const times: number[] = [];
    for (let i = 0; i < decisions; i++) {
      const request = requests[i % requests.length] as (typeof requests)[number];
      const t = performance.now();
      const { outcome } = decide(compiled, PLATFORM, { action: 'mint', request });
      times.push((performance.now() - t) * 1000);
      if (!outcome.allowed) throw new Error(`${name}: a tenant request was denied`);
    }
    return {
      name,
      bytes: Buffer.byteLength(text),
      loadMs: percentile(loads, 50),
      decideUs: { p50: percentile(times, 50), p99: percentile(times, 99) },
    };
  });
}
