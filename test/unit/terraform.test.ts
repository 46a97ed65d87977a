import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { JOB_TARGET, TARGET_ROUTES } from '../../functions/handlers.js';
import { compilePolicy } from '../../shared/policy/load.js';
import {
  evaluate,
  failedValidations,
  instanceAttribute,
  instanceKeys,
  planScope,
  tfvars,
  UNKNOWN,
  variableValues,
} from '../support/tf-eval.js';
import { EXTRA_SCHEMAS } from '../support/tf-schema.js';
import {
  attr,
  type Block,
  blocks,
  type Expr,
  parseBody,
  readModule,
  type TfModule,
  traversals,
} from '../support/tf-syntax.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = join(ROOT, 'terraform');
const m: TfModule = readModule(DIR);
const text = Object.fromEntries(
  readdirSync(DIR)
    .filter((f) => f.endsWith('.tf'))
    .map((f) => [f, readFileSync(join(DIR, f), 'utf8')]),
);
const README = readFileSync(join(DIR, 'README.md'), 'utf8');
const example = (name: string) => tfvars(readFileSync(join(DIR, 'examples', name), 'utf8'), name, parseBody);
/** What each example's comments say to pass through the environment (TF_VAR_...). */
const SINGLE: Record<string, unknown> = {
  ...example('single-tenant.tfvars'),
  upstash_redis_rest_token: 'rest-token',
};
const MULTI: Record<string, unknown> = { ...example('multi-tenant.tfvars'), upstash_api_key: 'api-key' };
const RUNTIME = 'token-broker-runtime@acme-prod.iam.gserviceaccount.com';

/** Variables, validation failures and a plan scope, as `terraform plan -var-file` would have them. */
function plan(given: Record<string, unknown>, known: Record<string, Record<string, unknown>> = {}) {
  const vars = variableValues(m, given);
  const failures = failedValidations(m, vars);
  // Terraform evaluates locals and resources only once every variable is valid.
  return {
    vars,
    failures,
    get scope() {
      if (failures.length > 0) throw new Error(`invalid variables:\n${failures.join('\n')}`);
      return planScope(m, vars, known);
    },
  };
}
const resource = (address: string): Block => {
  const r = m.resources.get(address);
  if (!r) throw new Error(`no resource ${address}`);
  return r;
};
const refs = (e: Expr | undefined) => (e ? [...traversals(e)].map((t) => [t.root, ...t.path].join('.')) : []);
const dependsOn = (address: string) => refs(attr(resource(address).body, 'depends_on'));
const refsIn = (b: Block): string[] => {
  const out: string[] = [];
  const walk = (body: Block['body']) => {
    for (const a of body.attrs) out.push(...refs(a.expr));
    for (const x of body.blocks) walk(x.body);
  };
  walk(b.body);
  return out;
};
const functions = () => [...m.resources].filter(([k]) => k.startsWith('google_cloudfunctions2_function.'));

describe('examples', () => {
  it.each([
    ['single-tenant.tfvars', SINGLE],
    ['multi-tenant.tfvars', MULTI],
  ])('%s sets only declared variables and passes every validation', (_name, given) => {
    expect(plan(given).failures).toEqual([]);
  });
});

describe('plan', () => {
  it.each([
    ['single-tenant', SINGLE],
    ['multi-tenant', MULTI],
    [
      'single-tenant without the job and the shared cache',
      {
        ...SINGLE,
        delegated_job: null,
        enable_shared_cache: false,
        upstash_redis_rest_url: '',
        targets: ['broker'],
      },
    ],
  ])('knows every count and for_each before apply (%s)', (_name, given) => {
    const { scope } = plan(given);
    let instances = 0;
    for (const address of [...m.resources.keys(), ...m.data.keys(), ...m.ephemeral.keys()])
      instances += instanceKeys(m, address, scope).length;
    expect(instances).toBeGreaterThan(30);
  });
});

describe('1. plan works without Upstash account credentials', () => {
  const required = [...EXTRA_SCHEMAS['upstash']!.provider!.args]
    .filter(([, a]) => a.required)
    .map(([n]) => n);
  const providerArgs = (given: Record<string, unknown>) => {
    const { scope } = plan(given);
    const body = m.providers.get('upstash')!.body;
    return Object.fromEntries(required.map((n) => [n, evaluate(attr(body, n)!, scope)]));
  };

  it('gives the upstash provider every required argument with none set (single-tenant)', () => {
    expect(required.sort()).toEqual(['api_key', 'email']);
    expect('upstash_api_key' in example('single-tenant.tfvars')).toBe(false);
    for (const [name, value] of Object.entries(providerArgs(SINGLE))) {
      expect(typeof value, name).toBe('string');
      expect(value, name).not.toBe('');
    }
    expect(instanceKeys(m, 'upstash_redis_database.cache', plan(SINGLE).scope)).toEqual([]);
  });

  it('passes the real credentials when it creates the database (multi-tenant)', () => {
    expect(providerArgs(MULTI)).toEqual({ email: 'ops@platform.example', api_key: 'api-key' });
    expect(instanceKeys(m, 'upstash_redis_database.cache', plan(MULTI).scope)).toEqual(['0']);
    expect(plan({ ...MULTI, upstash_api_key: null }).failures.join('\n')).toMatch(/needs upstash_api_key/);
  });

  it('no longer claims the provider is never called with empty credentials', () => {
    for (const t of [text['versions.tf']!, text['variables.tf']!]) expect(t).not.toMatch(/never called/);
  });
});

describe('2. functions build as an account of ours, with the least roles', () => {
  it('sets build_config.service_account and our own image repository on every function', () => {
    expect(functions().length).toBe(2);
    for (const [name, f] of functions()) {
      const build = blocks(f.body, 'build_config')[0]!.body;
      expect(refs(attr(build, 'service_account')), name).toEqual(['google_service_account.build.id']);
      expect(refs(attr(build, 'docker_repository')), name).toEqual([
        'google_artifact_registry_repository.functions.id',
      ]);
    }
  });

  it('grants the build account exactly logs, its repository, and read access to the sources', () => {
    const grants = [...m.resources]
      .filter(([, b]) => refs(attr(b.body, 'member')).includes('google_service_account.build.email'))
      .map(([k, b]) => {
        const condition = blocks(b.body, 'condition')[0];
        return `${k.split('.')[0]} ${String(evaluate(attr(b.body, 'role')!, {}))}${condition ? ` if ${String(evaluate(attr(condition.body, 'expression')!, {}))}` : ''}`;
      })
      .sort();
    expect(grants).toEqual([
      'google_artifact_registry_repository_iam_member roles/artifactregistry.writer',
      'google_project_iam_member roles/logging.logWriter',
      'google_project_iam_member roles/storage.objectViewer if resource.name.startsWith("projects/_/buckets/gcf-v2-sources-")',
      'google_storage_bucket_iam_member roles/storage.objectViewer',
    ]);
    expect(README).toMatch(/## Build service account/);
    for (const role of ['logging.logWriter', 'artifactregistry.writer', 'storage.objectViewer'])
      expect(README).toContain(role);
  });
});

describe('3. the scheduled job reaches the internal broker', () => {
  const job = () => blocks(resource('google_cloudfunctions2_function.job').body, 'service_config')[0]!.body;

  it('takes Cloud Scheduler calls on internal ingress, and sends all egress through a VPC connector', () => {
    const { scope } = plan(SINGLE);
    expect(evaluate(attr(job(), 'ingress_settings')!, scope)).toBe('ALLOW_INTERNAL_ONLY');
    expect(evaluate(attr(job(), 'vpc_connector_egress_settings')!, scope)).toBe('ALL_TRAFFIC');
    expect(refs(attr(job(), 'vpc_connector'))).toContain('google_vpc_access_connector.job.id');
    expect(instanceKeys(m, 'google_vpc_access_connector.job', scope)).toEqual(['job']);
    // Calls from a connector count as internal only with Private Google Access on its subnet.
    expect(
      instanceAttribute(m, 'google_compute_subnetwork.job', 'job', 'private_ip_google_access', scope),
    ).toBe(true);
    expect(text['job.tf']).not.toMatch(/outside the VPC/);
  });

  it('uses a given connector instead of making one', () => {
    const given = {
      ...SINGLE,
      delegated_job: {
        ...(SINGLE['delegated_job'] as object),
        vpc_connector: 'projects/acme-prod/locations/europe-west1/connectors/shared',
      },
    };
    const { scope, failures } = plan(given);
    expect(failures).toEqual([]);
    for (const r of [
      'google_compute_network.job',
      'google_compute_subnetwork.job',
      'google_vpc_access_connector.job',
    ])
      expect(instanceKeys(m, r, scope), r).toEqual([]);
    expect(
      instanceAttribute(
        m,
        'google_cloudfunctions2_function.job',
        'job',
        'service_config.vpc_connector',
        scope,
      ),
    ).toBe('projects/acme-prod/locations/europe-west1/connectors/shared');
  });

  it('never opens ingress to all unless the operator sets it, and never for the job', () => {
    const ingress = (given: Record<string, unknown>) => {
      const { scope } = plan(given);
      return Object.fromEntries(
        functions().flatMap(([address]) =>
          instanceKeys(m, address, scope).map((key) => [
            `${address.split('.')[1]}/${key}`,
            instanceAttribute(m, address, key, 'service_config.ingress_settings', scope),
          ]),
        ),
      );
    };
    expect(ingress(SINGLE)).toEqual({
      'broker/token': 'ALLOW_INTERNAL_ONLY',
      'broker/jwt': 'ALLOW_INTERNAL_ONLY',
      'broker/idtoken': 'ALLOW_INTERNAL_ONLY',
      'broker/admin': 'ALLOW_INTERNAL_ONLY',
      'broker/sts': 'ALLOW_INTERNAL_ONLY',
      'job/job': 'ALLOW_INTERNAL_ONLY',
    });
    const open = ingress({ ...SINGLE, ingress: 'ALLOW_ALL' });
    expect(open['broker/token']).toBe('ALLOW_ALL');
    expect(open['broker/sts']).toBe('ALLOW_INTERNAL_ONLY');
    expect(open['job/job']).toBe('ALLOW_INTERNAL_ONLY');
    expect(README).toMatch(/Cloud Scheduler/);
    expect(README).toMatch(/Private Google Access/);
  });
});

describe('4. APIs and ordering', () => {
  it('enables IAM, Resource Manager and IAM Credentials, and the job network APIs with a job', () => {
    const apis = instanceKeys(m, 'google_project_service.apis', plan(SINGLE).scope);
    for (const api of [
      'iam.googleapis.com',
      'cloudresourcemanager.googleapis.com',
      'iamcredentials.googleapis.com',
      'secretmanager.googleapis.com',
      'cloudfunctions.googleapis.com',
      'cloudbuild.googleapis.com',
      'vpcaccess.googleapis.com',
      'compute.googleapis.com',
    ])
      expect(apis).toContain(api);
    const without = instanceKeys(
      m,
      'google_project_service.apis',
      plan({ ...SINGLE, delegated_job: null }).scope,
    );
    expect(without).not.toContain('vpcaccess.googleapis.com');
  });

  it('creates nothing that needs an API before the API is enabled', () => {
    const needApi = [...m.resources.keys()].filter((k) =>
      /^google_(service_account|storage_bucket|secret_manager_secret|artifact_registry_repository|compute_network|vpc_access_connector|cloudfunctions2_function|cloud_scheduler_job|logging_metric|monitoring_dashboard|service_account_iam_member)\./.test(
        k,
      ),
    );
    expect(needApi.length).toBeGreaterThan(10);
    for (const k of needApi) {
      const direct = dependsOn(k).includes('google_project_service.apis');
      // Or through something that itself waits for the APIs (a secret, an account, a network).
      const through = refsIn(resource(k)).some((r) => {
        const address = r.split('.').slice(0, 2).join('.');
        return (
          address !== k &&
          m.resources.has(address) &&
          dependsOn(address).includes('google_project_service.apis')
        );
      });
      expect(direct || through, k).toBe(true);
    }
  });

  it('starts the functions only after the Upstash token and cache key versions exist', () => {
    const deps = dependsOn('google_cloudfunctions2_function.broker');
    expect(deps).toContain('google_secret_manager_secret_version.upstash_token');
    expect(deps).toContain('google_secret_manager_secret_version.cache_key');
  });
});

describe('5. secrets stay out of plan and state', () => {
  it('writes every secret version through a write-only argument with its version (the policy is not a secret)', () => {
    const versions = [...m.resources].filter(
      ([k]) =>
        k.startsWith('google_secret_manager_secret_version.') &&
        k !== 'google_secret_manager_secret_version.policy',
    );
    expect(versions.length).toBe(3);
    // The policy (policy_delivery = "secret") is configuration already in plan and state (var.policy).
    expect(refs(attr(resource('google_secret_manager_secret_version.policy').body, 'secret_data'))).toEqual([
      'local.policy_json',
    ]);
    expect(text['policy.tf']).toMatch(/configuration, not key material/);
    for (const [k, v] of versions) {
      expect(attr(v.body, 'secret_data'), k).toBeUndefined();
      expect(attr(v.body, 'secret_data_wo'), k).toBeDefined();
      expect(attr(v.body, 'secret_data_wo_version'), k).toBeDefined();
    }
    expect(
      refs(attr(resource('google_secret_manager_secret_version.cache_key').body, 'secret_data_wo')),
    ).toEqual(['ephemeral.random_bytes.cache_key.base64']);
    expect(m.resources.has('random_bytes.cache_key')).toBe(false);
  });

  it('takes Upstash credentials as ephemeral variables', () => {
    for (const v of ['upstash_api_key', 'upstash_redis_rest_token']) {
      expect(evaluate(attr(m.variables.get(v)!, 'ephemeral')!, {}), v).toBe(true);
      expect(evaluate(attr(m.variables.get(v)!, 'sensitive')!, {}), v).toBe(true);
    }
  });

  it('requires the Terraform and provider versions that have write-only and ephemeral support, and says why', () => {
    const tf = blocks(m.files['versions.tf']!, 'terraform')[0]!.body;
    const min = (constraint: string) => /^>= ?([\d.]+)/.exec(constraint)![1]!.split('.').map(Number);
    const atLeast = (v: number[], floor: number[]) =>
      v[0]! > floor[0]! || (v[0] === floor[0] && (v[1] ?? 0) >= floor[1]!);
    expect(atLeast(min(String(evaluate(attr(tf, 'required_version')!, {}))), [1, 11])).toBe(true);
    const rp = blocks(tf, 'required_providers')[0]!.body;
    const version = (p: string) => (evaluate(attr(rp, p)!, {}) as Record<string, string>)['version']!;
    expect(atLeast(min(version('google')), [6, 23])).toBe(true);
    expect(atLeast(min(version('random')), [3, 9])).toBe(true);
    expect(text['versions.tf']).toMatch(/write-only/);
    expect(text['versions.tf']).toMatch(/ephemeral random_bytes/);
    expect(README).toMatch(/## What is still in state/);
  });
});

describe('6. cross-variable checks', () => {
  it('refuses a shared cache with no database', () => {
    const { failures } = plan({ ...SINGLE, upstash_redis_rest_url: '', upstash_redis_rest_token: null });
    expect(failures.join('\n')).toMatch(/enable_shared_cache needs a database/);
    expect(plan({ ...SINGLE, upstash_redis_rest_token: null }).failures.join('\n')).toMatch(
      /needs upstash_redis_rest_token/,
    );
    expect(
      plan({
        ...SINGLE,
        enable_shared_cache: false,
        upstash_redis_rest_url: '',
        upstash_redis_rest_token: null,
        targets: ['broker'],
      }).failures,
    ).toEqual([]);
  });

  it('refuses a delegated job without a token endpoint', () => {
    expect(plan({ ...SINGLE, targets: ['jwt', 'idtoken'] }).failures.join('\n')).toMatch(
      /delegated_job calls the token endpoint/,
    );
    expect(plan({ ...SINGLE, targets: ['broker'] }).failures).toEqual([]);
  });

  it.each(['europe-west1', 'europe-west10', 'northamerica-northeast2', 'me-central2', 'us-east5'])(
    'accepts the region %s',
    (region) => expect(plan({ ...SINGLE, region }).failures).toEqual([]),
  );

  it.each(['europe_west1', 'Europe-west1', 'europe-west', 'global'])('refuses the region %s', (region) => {
    expect(plan({ ...SINGLE, region }).failures.join('\n')).toMatch(/^region:/m);
  });

  it('pins the cache key and Upstash token versions the functions read', () => {
    const service = blocks(resource('google_cloudfunctions2_function.broker').body, 'service_config')[0]!
      .body;
    const direct = blocks(service, 'secret_environment_variables')[0]!.body;
    expect(refs(attr(direct, 'version'))).toEqual(['google_secret_manager_secret_version.cache_key.version']);
    const dynamic = blocks(service, 'dynamic').find((d) => d.labels[0] === 'secret_environment_variables')!;
    expect(refs(attr(dynamic.body, 'for_each'))).toEqual([
      'google_secret_manager_secret_version.upstash_token',
    ]);
    expect(refs(attr(blocks(dynamic.body, 'content')[0]!.body, 'version'))).toEqual([
      'secret_environment_variables.value.version',
    ]);
    // Secret environment variables are read once, at start: pinned. The policy volume is read at `latest`.
    const envSecrets = service.blocks.filter(
      (b) => b.type === 'secret_environment_variables' || b.labels[0] === 'secret_environment_variables',
    );
    expect(envSecrets.length).toBe(2);
    expect(JSON.stringify(envSecrets)).not.toContain('"latest"');
  });

  it('accepts only Upstash primary regions Upstash accepts', () => {
    expect(plan({ ...MULTI, upstash_region: 'us-central1' }).failures.join('\n')).toMatch(
      /upstash_region must be/,
    );
    expect(plan(MULTI).vars['upstash_region']).toBe('us-east-1');
  });

  it('refuses a separate admin function without the shared cache, which its purge could not reach', () => {
    const off = {
      ...SINGLE,
      enable_shared_cache: false,
      upstash_redis_rest_url: '',
      upstash_redis_rest_token: null,
    };
    expect(plan(off).failures.join('\n')).toMatch(
      /admin target as its own function needs enable_shared_cache/,
    );
    expect(plan({ ...off, targets: ['broker', 'sts'] }).failures).toEqual([]);
    expect(plan({ ...off, targets: ['broker', 'admin'] }).failures.join('\n')).toMatch(/admin target/);
    expect(plan({ ...off, targets: ['token', 'jwt'] }).failures).toEqual([]);
    expect(plan(SINGLE).failures).toEqual([]);
  });
});

describe('7. least privilege', () => {
  it('gives the runtime account no project-level role', () => {
    const projectLevel = [...m.resources].filter(([k]) =>
      /^google_(project|folder|organization)_iam_/.test(k),
    );
    for (const [k, b] of projectLevel)
      expect(refs(attr(b.body, 'member')), k).not.toContain('google_service_account.broker.email');
    expect(text['main.tf']).not.toMatch(/logWriter/);
  });

  it('grants no primitive role, no project-wide secret access and no project-wide token creation', () => {
    for (const t of Object.values(text)) expect(t).not.toMatch(/roles\/(owner|editor|viewer)\b/);
    for (const [k, b] of [...m.resources].filter(([k]) =>
      /^google_(project|folder|organization)_iam_/.test(k),
    )) {
      const role = String(evaluate(attr(b.body, 'role')!, {}));
      expect(role, k).not.toMatch(/secretmanager|serviceAccountTokenCreator|serviceAccountUser/);
    }
    const accessors = [...m.resources].filter(
      ([, b]) =>
        attr(b.body, 'role')?.k === 'lit' &&
        (attr(b.body, 'role') as { v: unknown }).v === 'roles/secretmanager.secretAccessor',
    );
    expect(accessors.length).toBe(3); // key secrets, cache secrets, the policy secret: each on its own secrets
    for (const [k] of accessors) expect(k).toMatch(/^google_secret_manager_secret_iam_member\./);
  });

  it('grants run.invoker on the Cloud Run service, never with the function IAM resource', () => {
    expect(
      [...m.resources.keys()].filter((k) => k.startsWith('google_cloudfunctions2_function_iam')),
    ).toEqual([]);
    const invokers = [...m.resources].filter(
      ([, b]) =>
        attr(b.body, 'role')?.k === 'lit' &&
        (attr(b.body, 'role') as { v: unknown }).v === 'roles/run.invoker',
    );
    expect(invokers.length).toBe(3);
    for (const [k, b] of invokers) {
      expect(k).toMatch(/^google_cloud_run_v2_service_iam_member\./);
      // The service under a function: google_cloudfunctions2_function.X[...].service_config[0].service, read
      // directly or picked out of the instances by a for expression.
      const name = attr(b.body, 'name');
      expect(refs(name)[0], k).toMatch(/^google_cloudfunctions2_function\.\w+/);
      expect(JSON.stringify(name), k).toMatch(
        /"name":"service_config"\},"key":\{"k":"lit","v":0\}\},"name":"service"/,
      );
    }
  });

  it('gives no secret a default value', () => {
    for (const [name, body] of m.variables) {
      const secret = attr(body, 'sensitive') !== undefined || attr(body, 'ephemeral') !== undefined;
      if (!secret || name === 'service_account_key_files') continue; // paths, not secrets
      expect(evaluate(attr(body, 'default') ?? { k: 'lit', v: 'MISSING' }, {}), name).toBeNull();
    }
  });
});

describe('keyless accounts', () => {
  const known = { google_service_account: { broker: { email: RUNTIME } } };
  const grants = (given: Record<string, unknown>) => {
    const { scope } = plan(given, known);
    const address = 'google_service_account_iam_member.keyless_token_creator';
    return instanceKeys(m, address, scope).map((key) => ({
      on: instanceAttribute(m, address, key, 'service_account_id', scope),
      role: instanceAttribute(m, address, key, 'role', scope),
      member: instanceAttribute(m, address, key, 'member', scope),
    }));
  };

  it('grants the runtime account token creation on each keyless account alone, and makes no secret for it', () => {
    expect(grants(SINGLE)).toEqual([
      {
        on: 'projects/acme-prod/serviceAccounts/calendar-sync@acme-prod.iam.gserviceaccount.com',
        role: 'roles/iam.serviceAccountTokenCreator',
        member: `serviceAccount:${RUNTIME}`,
      },
    ]);
    expect(instanceKeys(m, 'google_secret_manager_secret.key', plan(SINGLE).scope)).toEqual([
      'reporting-key',
    ]);
  });

  it('grants along a delegate chain: the broker on the first delegate, each delegate on the next', () => {
    expect(grants(MULTI)).toEqual([
      {
        on: 'projects/platform-prod/serviceAccounts/broker-hop@platform-prod.iam.gserviceaccount.com',
        role: 'roles/iam.serviceAccountTokenCreator',
        member: `serviceAccount:${RUNTIME}`,
      },
      {
        on: 'projects/tenant-green/serviceAccounts/green-tenant@tenant-green.iam.gserviceaccount.com',
        role: 'roles/iam.serviceAccountTokenCreator',
        member: 'serviceAccount:broker-hop@platform-prod.iam.gserviceaccount.com',
      },
    ]);
    expect(instanceKeys(m, 'google_secret_manager_secret.key', plan(MULTI).scope)).toEqual([
      'tenant-blue-key',
    ]);
  });

  it('writes keyless entries into BROKER_POLICY as the contract has them', () => {
    const { scope } = plan(MULTI);
    // What the functions get in BROKER_POLICY (main.tf: jsonencode(local.policy)).
    const env = instanceAttribute(
      m,
      'google_cloudfunctions2_function.broker',
      'broker',
      'service_config.environment_variables',
      scope,
    ) as Record<string, unknown>;
    const policy = JSON.parse(String(env['BROKER_POLICY'])) as { serviceAccounts: Record<string, unknown>[] };
    expect(policy.serviceAccounts).toEqual([
      {
        email: 'blue-tenant@tenant-blue.iam.gserviceaccount.com',
        key: 'projects/platform-prod/secrets/tenant-blue-key/versions/latest',
        tenant: 'blue',
      },
      {
        email: 'green-tenant@tenant-green.iam.gserviceaccount.com',
        keyless: true,
        delegates: ['broker-hop@platform-prod.iam.gserviceaccount.com'],
        tenant: 'green',
      },
    ]);
    // The broker itself loads it, keyed and keyless entries alike.
    const compiled = compilePolicy(policy);
    expect([...compiled.accounts.values()].map((a) => a.mode)).toEqual(['keyed', 'keyless']);
    expect(compiled.tenants.get('green')).toMatchObject({
      mode: 'keyless',
      delegates: ['broker-hop@platform-prod.iam.gserviceaccount.com'],
    });
  });

  it.each([
    [
      { email: 'a@acme-prod.iam.gserviceaccount.com', secret_id: 'a-key', keyless: true },
      /exactly one of secret_id/,
    ],
    [{ email: 'a@acme-prod.iam.gserviceaccount.com' }, /exactly one of secret_id/],
    [
      {
        email: 'a@acme-prod.iam.gserviceaccount.com',
        secret_id: 'a-key',
        delegates: ['d@acme-prod.iam.gserviceaccount.com'],
      },
      /delegates are only for keyless/,
    ],
    [{ email: 'someone@gmail.com', keyless: true }, /user-managed service accounts/],
    [
      { email: 'a@acme-prod.iam.gserviceaccount.com', keyless: true, delegates: ['not-an-email'] },
      /user-managed service accounts/,
    ],
  ])('refuses the entry %j', (entry, message) => {
    expect(plan({ ...SINGLE, service_accounts: [entry] }).failures.join('\n')).toMatch(message);
  });

  it('refuses two accounts in one secret', () => {
    const twice = [
      { email: 'a@acme-prod.iam.gserviceaccount.com', secret_id: 'shared-key' },
      { email: 'b@acme-prod.iam.gserviceaccount.com', secret_id: 'shared-key' },
    ];
    expect(plan({ ...SINGLE, service_accounts: twice }).failures.join('\n')).toMatch(/one account's key/);
  });
});

describe('token exchange (sts)', () => {
  const bindings = (given: Record<string, unknown>) =>
    instanceKeys(m, 'google_cloud_run_v2_service_iam_member.invoker', plan(given).scope).filter((k) =>
      k.startsWith('sts/'),
    );

  it('deploys sts on internal ingress with the callers as invokers by default, which domain-restricted sharing allows', () => {
    const { scope } = plan(SINGLE);
    expect(instanceKeys(m, 'google_cloudfunctions2_function.broker', scope)).toContain('sts');
    expect(
      instanceAttribute(
        m,
        'google_cloudfunctions2_function.broker',
        'sts',
        'service_config.ingress_settings',
        scope,
      ),
    ).toBe('ALLOW_INTERNAL_ONLY');
    expect(
      instanceAttribute(
        m,
        'google_cloudfunctions2_function.broker',
        'sts',
        'build_config.entry_point',
        scope,
      ),
    ).toBe('sts');
    expect(plan(SINGLE).vars['sts_invoker']).toBe('callers');
    expect(bindings(SINGLE)).toEqual(['sts/billing@acme-prod.iam.gserviceaccount.com']);
    // No member from outside the organisation: nothing iam.allowedPolicyMemberDomains refuses.
    const members = instanceKeys(m, 'google_cloud_run_v2_service_iam_member.invoker', scope).map((k) =>
      instanceAttribute(m, 'google_cloud_run_v2_service_iam_member.invoker', k, 'member', scope),
    );
    expect(members.filter((x) => x === 'allUsers' || x === 'allAuthenticatedUsers')).toEqual([]);
    expect(README).toMatch(/## Token exchange/);
    expect(README).toMatch(/allowedPolicyMemberDomains/);
  });

  it("lets anyone past Cloud Run's check on sts with sts_invoker = allUsers, for Google's client libraries", () => {
    const given = { ...SINGLE, sts_invoker: 'allUsers' };
    expect(bindings(given)).toEqual(['sts/allUsers']);
    expect(
      instanceAttribute(
        m,
        'google_cloud_run_v2_service_iam_member.invoker',
        'sts/allUsers',
        'member',
        plan(given).scope,
      ),
    ).toBe('allUsers');
  });

  it('refuses a public invoker on ALLOW_ALL ingress unless the operator says so', () => {
    const open = { ...SINGLE, sts_invoker: 'allUsers', sts_ingress: 'ALLOW_ALL' };
    expect(plan(open).failures.join('\n')).toMatch(/exposes the sts function/);
    expect(plan({ ...open, sts_allow_public_internet: true }).failures).toEqual([]);
    expect(plan({ ...SINGLE, sts_ingress: 'ALLOW_ALL' }).failures).toEqual([]); // invoker IAM still checks
  });
});

describe('entry points', () => {
  it('uses entry points that the built source really registers, on nodejs22', () => {
    const condition = attr(blocks(m.variables.get('targets')!, 'validation')[0]!.body, 'condition');
    const allowed = [...JSON.stringify(condition).matchAll(/"k":"lit","v":"(\w+)"/g)].map((x) => x[1]!);
    const routes = Object.keys(TARGET_ROUTES);
    for (const t of routes) expect(allowed).toContain(t);
    // sts comes with the token-exchange handler; until that lands in this tree it is the only target the
    // bundle may lack. Once TARGET_ROUTES has it, the registration check below covers it like the others.
    expect(allowed.filter((t) => !routes.includes(t))).toEqual(routes.includes('sts') ? [] : ['sts']);
    const entryPoints = new Set<string>();
    for (const [name, f] of functions()) {
      const build = blocks(f.body, 'build_config')[0]!.body;
      expect(evaluate(attr(build, 'runtime')!, {}), name).toBe('nodejs22');
      const ep = attr(build, 'entry_point')!;
      if (ep.k === 'lit') entryPoints.add(String(ep.v));
      else for (const t of allowed) entryPoints.add(t);
    }
    expect(entryPoints).toContain(JOB_TARGET);
    const registered = (names: string[], env: NodeJS.ProcessEnv): string[] => {
      const probe = `
        const { getTestServer } = await import('@google-cloud/functions-framework/testing');
        await import('${ROOT}dist/bundle/index.js');
        const ok = ${JSON.stringify(names)}.filter((n) => { try { getTestServer(n); return true; } catch { return false; } });
        console.log(JSON.stringify(ok));`;
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], {
        env: { ...process.env, ...env },
        cwd: ROOT,
        encoding: 'utf8',
      });
      // The broker's own lines (a policy warning, say) may follow: ours is the one JSON array.
      return JSON.parse(
        out
          .split('\n')
          .filter((l) => l.startsWith('['))
          .pop()!,
      ) as string[];
    };
    const brokerTargets = [...entryPoints].filter((t) => t !== JOB_TARGET && routes.includes(t));
    const policy = {
      serviceAccounts: [{ email: 'a@p.iam.gserviceaccount.com', key: 'file:k.json' }],
      grants: [],
    };
    expect(
      registered(brokerTargets, {
        BROKER_POLICY: JSON.stringify(policy),
        BROKER_AUDIENCE: 'https://x.example',
        BROKER_JWKS_URL: 'http://127.0.0.1:9/certs',
      }),
    ).toEqual(brokerTargets);
    expect(registered([JOB_TARGET], { FUNCTION_TARGET: JOB_TARGET })).toEqual([JOB_TARGET]);
  });

  it('passes each function its own URL as the audience, and the policy as JSON', () => {
    const { scope } = plan(SINGLE);
    const env = instanceAttribute(
      m,
      'google_cloudfunctions2_function.broker',
      'token',
      'service_config.environment_variables',
      {
        ...scope,
        upstash_redis_database: { cache: [] },
      },
    ) as Record<string, unknown>;
    expect(env['BROKER_AUDIENCE']).toBe(
      'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-token',
    );
    expect(env['UPSTASH_REDIS_REST_URL']).toBe('https://eu1-example-12345.upstash.io');
    expect(env['BROKER_POLICY']).not.toBe(UNKNOWN);
    // The example's two grants, and the smoke test's (terraform/smoke.tf).
    expect(JSON.parse(String(env['BROKER_POLICY'])).grants).toHaveLength(3);
  });
});
