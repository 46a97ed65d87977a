/**
 * How the functions get the policy (terraform/policy.tf): in BROKER_POLICY, or
 * from a Secret Manager secret mounted as a file, and the size checks that
 * guard each way, tested at the exact byte counts where they must fire.
 */
import { describe, expect, it } from 'vitest';
import type { Plan } from '../support/tf-eval.js';
import {
  blocksOf,
  dependsOn,
  fullPlan,
  lifecycle,
  MULTI,
  planned,
  README,
  refs,
  resource,
  SINGLE,
  variables,
} from '../support/tf-module.js';
import { attr } from '../support/tf-syntax.js';

const ONE: Record<string, unknown> = { ...SINGLE, targets: ['token'] };
const SECRET = { ...ONE, policy_delivery: 'secret' };
const FN = 'google_cloudfunctions2_function.broker';

const serviceConfig = (p: Plan, target = 'token') => blocksOf(planned(p, FN, target), 'service_config')[0]!;
const envOf = (p: Plan, target = 'token') =>
  serviceConfig(p, target)['environment_variables'] as Record<string, string>;
/** The bytes Cloud Run counts for a function's environment, computed here independently of policy.tf. */
const envBytes = (p: Plan, target = 'token') => {
  const config = serviceConfig(p, target);
  let n = 0;
  for (const [k, v] of Object.entries(config['environment_variables'] as Record<string, string>))
    n += Buffer.byteLength(k) + Buffer.byteLength(v);
  for (const s of blocksOf(config, 'secret_environment_variables')) n += Buffer.byteLength(String(s['key']));
  return n;
};
/** The single-tenant policy with one more grant whose scope is `pad` (the padding moves the size byte by byte). */
const padded = (given: Record<string, unknown>, pad: string) => {
  const policy = given['policy'] as { grants: unknown[] };
  return {
    ...given,
    policy: {
      ...policy,
      grants: [
        ...policy.grants,
        {
          callers: ['billing@acme-prod.iam.gserviceaccount.com'],
          serviceAccounts: ['reporting@acme-prod.iam.gserviceaccount.com'],
          scopes: [`https://www.googleapis.com/auth/${pad}`],
        },
      ],
    },
  };
};
/** A padded policy whose plan makes `measure` exactly `target` bytes. */
function sized(given: Record<string, unknown>, measure: (p: Plan) => number, target: number) {
  const base = measure(fullPlan(padded(given, 'x')));
  const exact = padded(given, 'x'.repeat(1 + target - base));
  expect(measure(fullPlan(exact))).toBe(target);
  return exact;
}

describe('policy_delivery = "env" (the default)', () => {
  it('passes the policy in BROKER_POLICY, with no secret, grant or volume for it', () => {
    const p = fullPlan(ONE);
    expect(Object.keys(envOf(p))).toContain('BROKER_POLICY');
    expect(envOf(p)['BROKER_POLICY_FILE']).toBeUndefined();
    for (const r of [
      'google_secret_manager_secret.policy',
      'google_secret_manager_secret_version.policy',
      'google_secret_manager_secret_iam_member.policy_access',
    ])
      expect(p.instances.get(r)!.size, r).toBe(0);
    expect(blocksOf(serviceConfig(p), 'secret_volumes')).toEqual([]);
  });

  it("counts the policy in bytes, not characters, as Terraform's jsonencode writes it", () => {
    // <, > and & come out as \u003c, \u003e and \u0026; é is two bytes in UTF-8.
    const p = fullPlan(padded(ONE, 'café<&>'));
    const json = envOf(p)['BROKER_POLICY']!;
    expect(json).toContain('café\\u003c\\u0026\\u003e');
    const scope = p.scope['local'] as Record<string, unknown>;
    expect(scope['policy_bytes']).toBe(Buffer.byteLength(json));
    expect(scope['policy_bytes']).toBe(json.length + 1);
    expect((scope['env_bytes'] as Record<string, number>)['token']).toBe(envBytes(p));
  });

  it('plans a function whose environment is exactly 32 KiB, and refuses one byte more, naming policy_delivery', () => {
    const exact = sized(ONE, (p) => envBytes(p), 32768);
    expect(fullPlan(exact).preconditions).toEqual([]);
    const p = fullPlan(sized(ONE, (p) => envBytes(p), 32769));
    expect(envBytes(p)).toBe(32769);
    expect(p.preconditions).toEqual([
      expect.stringMatching(
        /^google_cloudfunctions2_function\.broker\["token"\]: The token function's environment variables come to 32769 bytes .* over the 32 KiB \(32768 bytes\) .* Set policy_delivery = "secret"/,
      ),
    ]);
  });

  it('counts the other variables too: the same policy fits one function and not another with a longer URL', () => {
    // BROKER_AUDIENCE of "idtoken" is two bytes longer than that of "token".
    const both = { ...SINGLE, targets: ['token', 'idtoken'] };
    const exact = sized(both, (p) => envBytes(p, 'token'), 32767);
    const p = fullPlan(exact);
    expect(envBytes(p, 'idtoken')).toBe(32769);
    expect(p.preconditions.map((x) => x.split(':')[0])).toEqual([
      'google_cloudfunctions2_function.broker["idtoken"]',
    ]);
  });

  it('reserves room for the URL of an Upstash database created in the same apply, unknown until then', () => {
    const p = fullPlan({ ...MULTI, targets: ['broker'] });
    const env = (p.scope['local'] as Record<string, Record<string, number>>)['env_bytes']!;
    const known = Object.entries(envOf(p, 'broker')).filter(([k]) => k !== 'UPSTASH_REDIS_REST_URL');
    const counted = known.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    expect(env['broker']).toBe(
      counted +
        'BROKER_CACHE_KEY'.length +
        'UPSTASH_REDIS_REST_TOKEN'.length +
        'UPSTASH_REDIS_REST_URL'.length +
        128,
    );
  });
});

describe('policy_delivery = "secret"', () => {
  it('mounts the policy from its own secret at latest, names the file in BROKER_POLICY_FILE, and drops BROKER_POLICY', () => {
    const p = fullPlan(SECRET);
    const env = envOf(p);
    expect(env['BROKER_POLICY']).toBeUndefined();
    expect(env['BROKER_POLICY_FILE']).toBe('/etc/secrets/token-broker/policy.json');
    const volumes = blocksOf(serviceConfig(p), 'secret_volumes');
    expect(volumes.length).toBe(1);
    expect(volumes[0]).toMatchObject({
      mount_path: '/etc/secrets/token-broker',
      project_id: 'acme-prod',
      versions: [{ version: 'latest', path: 'policy.json' }],
    });
    // A mount path Cloud Run allows: Google recommends /etc/secrets and restricts these.
    for (const restricted of ['/cloudsql', '/dev/log', '/pod', '/proc', '/var/log'])
      expect(String(volumes[0]!['mount_path']).startsWith(restricted)).toBe(false);
    expect(planned(p, 'google_secret_manager_secret.policy', '0')['secret_id']).toBe('token-broker-policy');
    // The version holds the same JSON the env var would have held.
    expect(planned(p, 'google_secret_manager_secret_version.policy', '0')['secret_data']).toBe(
      envOf(fullPlan(ONE))['BROKER_POLICY'],
    );
  });

  it('lets the runtime account read that secret only, before the functions start, and rotates create-before-destroy', () => {
    const p = fullPlan(SECRET);
    const access = planned(p, 'google_secret_manager_secret_iam_member.policy_access', '0');
    expect(access['role']).toBe('roles/secretmanager.secretAccessor');
    expect(
      refs(attr(resource('google_secret_manager_secret_iam_member.policy_access').body, 'secret_id')),
    ).toEqual(['google_secret_manager_secret.policy.secret_id']);
    expect(
      refs(attr(resource('google_secret_manager_secret_iam_member.policy_access').body, 'member')),
    ).toEqual(['google_service_account.broker.email']);
    expect(dependsOn(FN)).toEqual(
      expect.arrayContaining([
        'google_secret_manager_secret_version.policy',
        'google_secret_manager_secret_iam_member.policy_access',
      ]),
    );
    expect(
      refs(attr(resource('time_sleep.iam_propagation').body, 'triggers')).some((r) =>
        r.startsWith('google_secret_manager_secret_iam_member.policy_access'),
      ),
    ).toBe(true);
    expect(attr(lifecycle('google_secret_manager_secret_version.policy')!, 'create_before_destroy')).toEqual({
      k: 'lit',
      v: true,
    });
  });

  it('takes a policy too big for the environment', () => {
    const big = padded(SECRET, 'x'.repeat(40_000));
    const p = fullPlan(big);
    expect((p.scope['local'] as Record<string, number>)['policy_bytes']).toBeGreaterThan(40_000);
    expect(p.preconditions).toEqual([]);
    expect(fullPlan({ ...big, policy_delivery: 'env' }).preconditions.join()).toMatch(
      /policy_delivery = "secret"/,
    );
  });

  it("plans a policy of exactly 64 KiB, and refuses one byte more, as over Secret Manager's limit", () => {
    const bytes = (p: Plan) => (p.scope['local'] as Record<string, number>)['policy_bytes']!;
    const exact = sized(SECRET, bytes, 65536);
    expect(fullPlan(exact).preconditions).toEqual([]);
    const over = sized(SECRET, bytes, 65537);
    expect(fullPlan(over).preconditions).toEqual([
      expect.stringMatching(
        /^google_secret_manager_secret_version\.policy\["0"\]: The policy is 65537 bytes of JSON, over Secret Manager's 64 KiB \(65536 bytes\)/,
      ),
    ]);
  });

  it('refuses an unknown delivery', () => {
    expect(variables({ ...ONE, policy_delivery: 'file' }).failures.join()).toMatch(
      /policy_delivery must be env or secret/,
    );
  });
});

describe('large multi-tenant policies', () => {
  it('passes the shared-tenant pattern through: tenants ["*"] on an account, grants with any fields and an accessBoundary', () => {
    const shared = {
      ...ONE,
      service_accounts: [
        ...(ONE['service_accounts'] as unknown[]),
        { email: 'tenants@acme-prod.iam.gserviceaccount.com', keyless: true, tenants: ['*'] },
      ],
      policy: {
        grants: [
          {
            callers: ['platform@acme-prod.iam.gserviceaccount.com'],
            tenants: ['*'],
            scopes: ['https://www.googleapis.com/auth/devstorage.read_only'],
            accessBoundary: {
              accessBoundaryRules: [
                {
                  availableResource: '//storage.googleapis.com/projects/_/buckets/tenant-data',
                  availablePermissions: ['inRole:roles/storage.objectViewer'],
                },
              ],
            },
          },
          {
            callers: ['billing@acme-prod.iam.gserviceaccount.com'],
            serviceAccounts: ['reporting@acme-prod.iam.gserviceaccount.com'],
            scopes: ['https://www.googleapis.com/auth/bigquery.readonly'],
          },
        ],
      },
    };
    expect(variables(shared).failures).toEqual([]);
    const policy = JSON.parse(envOf(fullPlan(shared))['BROKER_POLICY']!);
    expect(policy.serviceAccounts.at(-1)).toEqual({
      email: 'tenants@acme-prod.iam.gserviceaccount.com',
      keyless: true,
      tenants: ['*'],
    });
    expect(policy.grants[0].accessBoundary.accessBoundaryRules[0].availablePermissions).toEqual([
      'inRole:roles/storage.objectViewer',
    ]);
    expect(variables({ ...ONE, policy: { grants: 'all' } }).failures.join()).toMatch(
      /policy\.grants must be a list/,
    );
  });

  it('documents each ceiling and the pattern that avoids the service-account one', () => {
    expect(README).toMatch(/## Large policies/);
    for (const fact of [
      '32 KiB',
      '64 KiB',
      '100 service accounts',
      'tenants = ["*"]',
      'accessBoundary',
      '/etc/secrets',
    ])
      expect(README).toContain(fact);
  });
});
