/**
 * Policy as code (docs/contract.md, "Policy as code"): the JSON Schema, and
 * `broker-token policy check` and `explain`, on every policy example of the
 * docs and on policies the loader refuses.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { policyMain } from '../../../infra/policy-cli.js';
import { ConfigError } from '../../../shared/errors.js';
import { compilePolicy } from '../../../shared/policy/load.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const schema = JSON.parse(readFileSync(join(ROOT, 'docs/policy.schema.json'), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
const dir = mkdtempSync(join(tmpdir(), 'policy-tooling-'));

/** Every fenced JSON block of the docs that is a whole policy (it has serviceAccounts and grants). */
function docExamples(): Array<{ where: string; policy: Record<string, unknown> }> {
  const out: Array<{ where: string; policy: Record<string, unknown> }> = [];
  for (const file of [
    'README.md',
    'docs/contract.md',
    'docs/calling.md',
    'docs/operations.md',
    'terraform/README.md',
  ]) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const [i, m] of [...text.matchAll(/```json\n([\s\S]*?)```/g)].entries()) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(m[1] as string);
      } catch {
        continue; // a fragment, not a document
      }
      const p = parsed as Record<string, unknown>;
      if (typeof p === 'object' && p !== null && 'serviceAccounts' in p && 'grants' in p)
        out.push({ where: `${file} #${i}`, policy: p });
    }
  }
  return out;
}

function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = policyMain(
    args,
    (s) => out.push(s),
    (s) => err.push(s),
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function file(name: string, policy: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(policy));
  return path;
}

const SHARED = 'tenants@acme.iam.gserviceaccount.com';
const PLATFORM = 'platform@acme.iam.gserviceaccount.com';
const bounded = {
  serviceAccounts: [
    { email: SHARED, keyless: true, tenants: ['*'] },
    { email: 'reporting@acme.iam.gserviceaccount.com', key: 'projects/acme/secrets/r/versions/1' },
  ],
  grants: [
    {
      callers: [PLATFORM],
      tenants: ['*'],
      scopes: ['https://www.googleapis.com/auth/devstorage.read_write'],
      accessBoundary: [
        {
          resource: '//storage.googleapis.com/projects/_/buckets/acme-tenants',
          permissions: ['inRole:roles/storage.objectAdmin'],
          condition: "resource.name.startsWith('projects/_/buckets/acme-tenants/objects/{tenant}/')",
        },
      ],
    },
    {
      callers: ['billing@acme.iam.gserviceaccount.com'],
      serviceAccounts: ['reporting@acme.iam.gserviceaccount.com'],
      scopes: ['https://www.googleapis.com/auth/bigquery.readonly'],
    },
  ],
};

/** Policies the loader refuses, each for another reason. */
const REFUSED: Record<string, unknown> = {
  'an unknown top-level key': { ...bounded, extra: 1 },
  'no serviceAccounts': { grants: [] },
  'a key and keyless': { serviceAccounts: [{ email: SHARED, keyless: true, key: 'file:k' }], grants: [] },
  'tenant and tenants': {
    serviceAccounts: [{ email: SHARED, keyless: true, tenant: 'a', tenants: ['b'] }],
    grants: [],
  },
  'a bad tenant id': { serviceAccounts: [{ email: SHARED, keyless: true, tenants: ['Blue'] }], grants: [] },
  'an unknown operation': {
    ...bounded,
    grants: [{ callers: [PLATFORM], serviceAccounts: [SHARED], scopes: ['s'], operations: ['sign'] }],
  },
  'a boundary on a bucket of another service': {
    ...bounded,
    grants: [
      {
        ...bounded.grants[0],
        accessBoundary: [{ resource: '//bigquery.googleapis.com/x', permissions: ['inRole:roles/x'] }],
      },
    ],
  },
  'eleven boundary rules': {
    ...bounded,
    grants: [
      {
        ...bounded.grants[0],
        accessBoundary: Array.from(
          { length: 11 },
          () => (bounded.grants[0] as { accessBoundary: unknown[] }).accessBoundary[0],
        ),
      },
    ],
  },
  'a rate limit of 0 requests': { ...bounded, rateLimit: { requests: 0, windowSeconds: 60 } },
};

describe('the policy JSON Schema', () => {
  const examples = docExamples();
  it('finds the docs’ policy examples (the README’s, the contract’s, the shared-tenant one)', () => {
    expect(examples.length).toBeGreaterThanOrEqual(3);
    expect(examples.some((e) => JSON.stringify(e.policy).includes('accessBoundary'))).toBe(true);
  });

  it('accepts every policy example in the docs, which the loader and `policy check` accept too', () => {
    for (const { where, policy } of examples) {
      expect(validate(policy), `${where}: ${JSON.stringify(validate.errors)}`).toBe(true);
      expect(() => compilePolicy(policy), where).not.toThrow();
      expect(run(['check', file('example.json', policy)]).code, where).toBe(0);
    }
    expect(validate({ $schema: './policy.schema.json', ...bounded })).toBe(true);
  });

  it.each(Object.entries(REFUSED))('rejects what the loader rejects: %s', (_, policy) => {
    expect(() => compilePolicy(policy)).toThrow(ConfigError);
    expect(validate(policy)).toBe(false);
  });
});

describe('broker-token policy check', () => {
  it('lists every problem with its JSON path, exit 1; the safety rule included', () => {
    const unsafe = {
      ...bounded,
      grants: [
        { callers: [PLATFORM], tenants: ['*'], scopes: ['s'] },
        { ...bounded.grants[0], operations: ['token', 'jwt'] },
      ],
    };
    const r = run(['check', file('unsafe.json', unsafe)]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      'grants[0]: reaches tenants of tenants@acme.iam.gserviceaccount.com, shared by several tenants, without an accessBoundary',
    );
    expect(r.err).toContain('grants[1].operations: a grant with accessBoundary allows only `token`');
  });

  it('prints what the broker would warn about, exit 0', () => {
    const risky = {
      serviceAccounts: [
        ...bounded.serviceAccounts,
        { email: 'idle@acme.iam.gserviceaccount.com', keyless: true },
      ],
      grants: [
        ...bounded.grants,
        { callers: ['*'], serviceAccounts: [SHARED], scopes: ['s'] },
        {
          callers: [PLATFORM],
          serviceAccounts: ['reporting@acme.iam.gserviceaccount.com'],
          operations: ['idtoken'],
        },
      ],
    };
    const r = run(['check', file('risky.json', risky)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('valid: 3 service account(s), 4 grant(s)');
    expect(r.out).toContain('warning: grants[2] has callers ["*"]');
    expect(r.out).toContain(
      'warning: grants[2] reaches tenants@acme.iam.gserviceaccount.com, an account shared by several tenants, by serviceAccount and without an accessBoundary',
    );
    expect(r.out).toContain('warning: grants[3] can never match: an ID token is always for an audience');
    expect(r.out).toContain(
      'warning: serviceAccounts[2] (idle@acme.iam.gserviceaccount.com) is reached by no grant',
    );
  });

  it('says so for a file that is not JSON, and for usage mistakes (exit 2)', () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ nope');
    expect(run(['check', broken])).toMatchObject({ code: 1, err: expect.stringContaining('not valid JSON') });
    expect(run(['lint', broken]).code).toBe(2);
    expect(run(['check']).code).toBe(2);
  });
});

describe('broker-token policy explain', () => {
  const policyFile = () => file('bounded.json', bounded);

  it('names the grant and prints the boundary a tenant request expands to', () => {
    const r = run([
      'explain',
      policyFile(),
      '--caller',
      PLATFORM,
      '--tenant',
      'blue',
      '--scopes',
      'https://www.googleapis.com/auth/devstorage.read_write',
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`allowed by grants[0], minted as ${SHARED} (keyless)`);
    expect(r.out).toContain("resource.name.startsWith('projects/_/buckets/acme-tenants/objects/blue/')");
    expect(r.out).toMatch(/bounded by the access boundary [\w-]{22}/);
  });

  it('names the reason the audit line would carry for a denial, and each grant’s verdict', () => {
    const scope = run([
      'explain',
      policyFile(),
      '--caller',
      PLATFORM,
      '--tenant',
      'blue',
      '--scopes',
      'https://www.googleapis.com/auth/cloud-platform',
    ]);
    expect(scope.code).toBe(1);
    expect(scope.out).toContain('denied: scope_not_granted');
    expect(scope.out).toContain('grants[0]: scope_not_granted');
    expect(scope.out).toContain('grants[1]: caller_not_granted');
    const jwt = run([
      'explain',
      policyFile(),
      '--caller',
      PLATFORM,
      '--tenant',
      'blue',
      '--operation',
      'jwt',
      '--audience',
      'https://x.example/',
    ]);
    expect(jwt.out).toContain('denied: operation_not_granted');
    const stranger = run([
      'explain',
      policyFile(),
      '--caller',
      'stranger@acme.com',
      '--service-account',
      SHARED,
      '--scopes',
      's',
    ]);
    expect(stranger.out).toContain('denied: caller_not_granted');
  });

  it('refuses what the broker would refuse with 400, as a usage error', () => {
    const r = run(['explain', policyFile(), '--caller', PLATFORM, '--tenant', 'Blue!', '--scopes', 's']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('"tenant" must be a tenant id');
  });
});
