/**
 * terraform/ planned whole, as `terraform plan` would on a fresh project:
 * every local, every instance's arguments, preconditions, checks and outputs
 * (test/support/tf-eval.ts, planModule), for both examples and for every
 * `targets` set that variables.tf allows.
 */

import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  evaluateText,
  planModule,
  planScope,
  TfEvalError,
  UNKNOWN,
  variableValues,
} from '../support/tf-eval.js';
import {
  blocksOf,
  DIR,
  dependsOn,
  fullPlan,
  lifecycle,
  MODULE,
  MULTI,
  planned,
  README,
  ROOT,
  refs,
  resource,
  SINGLE,
  TEXT,
  variables,
} from '../support/tf-module.js';
import { attr, readModule } from '../support/tf-syntax.js';

const TARGETS = ['token', 'jwt', 'idtoken', 'admin', 'sts', 'broker'];
/** Every non-empty subset of the targets, in the order variables.tf lists them. */
const SUBSETS: string[][] = Array.from({ length: 2 ** TARGETS.length - 1 }, (_, i) =>
  TARGETS.filter((_, bit) => (i + 1) & (1 << bit)),
);
const NO_JOB = { ...SINGLE, delegated_job: null, smoke_test: null };
const NO_CACHE = {
  ...NO_JOB,
  enable_shared_cache: false,
  upstash_redis_rest_url: '',
  upstash_redis_rest_token: null,
};

// main.tf:47 before issue 22, word for word.
const OLD_TOKEN_URL =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: an HCL interpolation, not a JavaScript one
  'contains(var.targets, "broker") ? "${local.function_url["broker"]}/token" : local.function_url["token"]';

describe('issue 22: the first plan on a fresh project', () => {
  it('fails, with the eager evaluator, on the old token_url_for_job for targets = ["sts"] and ["jwt", "idtoken"]', () => {
    for (const targets of [['sts'], ['jwt', 'idtoken']]) {
      const { vars, failures } = variables({ ...NO_JOB, targets });
      expect(failures).toEqual([]); // variables.tf allows these sets...
      // ...the old expression cannot be evaluated for them...
      const scope = planScope(MODULE, vars);
      expect(() => evaluateText(OLD_TOKEN_URL, scope)).toThrow(/no element "token"/);
      // ...and a module holding it fails its plan, although nothing reads the local without the job.
      const old = readModule(DIR, {
        ...TEXT,
        'main.tf': TEXT['main.tf']!.replace(
          /\n {2}token_url {6}= .*\n/,
          `\n  token_url_for_job = ${OLD_TOKEN_URL}\n`,
        ),
      });
      expect(old.locals.has('token_url_for_job')).toBe(true);
      expect(() => planScope(old, variableValues(old, { ...NO_JOB, targets }))).toThrow(TfEvalError);
      expect(() => planScope(old, variableValues(old, { ...NO_JOB, targets }))).toThrow(
        /local\.token_url_for_job: no element "token"/,
      );
    }
  });

  it('looks optional targets up and never indexes them in a local', () => {
    // function_url[...] of a literal target other than through each/for, anywhere in the module.
    for (const [file, text] of Object.entries(TEXT)) {
      expect(text, file).not.toMatch(/function_url\["(token|jwt|idtoken|admin|sts|broker)"\]/);
      expect(text, file).not.toMatch(/\[local\.token_function\]/); // null without a token endpoint
    }
    const { scope } = variables({ ...NO_JOB, targets: ['sts'] });
    expect((scope['local'] as Record<string, unknown>)['token_url']).toBeNull();
    expect((scope['local'] as Record<string, unknown>)['token_audience']).toBeNull();
    const broker = variables({ ...NO_JOB, targets: ['broker', 'sts'] }).scope['local'] as Record<
      string,
      unknown
    >;
    expect(broker['token_url']).toBe(
      'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-broker/token',
    );
    expect(broker['token_audience']).toBe(
      'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-broker',
    );
  });

  it.each([
    ['single-tenant', SINGLE],
    ['multi-tenant', MULTI],
  ])('plans the %s example whole, with no failed precondition', (_name, given) => {
    const p = fullPlan(given);
    expect(p.preconditions).toEqual([]);
    let instances = 0;
    for (const byKey of p.instances.values()) instances += byKey.size;
    expect(instances).toBeGreaterThan(30);
  });

  it(`plans every targets set variables.tf allows (${SUBSETS.length} sets, with and without the shared cache and the job)`, () => {
    let plans = 0;
    for (const targets of SUBSETS) {
      const variants: [string, Record<string, unknown>, boolean][] = [
        ['shared cache', { ...NO_JOB, targets }, true],
        ['no shared cache', { ...NO_CACHE, targets }, !targets.includes('admin')],
        ['the job', { ...SINGLE, targets }, targets.includes('token') || targets.includes('broker')],
      ];
      for (const [variant, given, allowed] of variants) {
        const { failures } = variables(given);
        expect(failures.length === 0, `${targets.join(',')} with ${variant}: ${failures.join('; ')}`).toBe(
          allowed,
        );
        if (!allowed) continue;
        const p = fullPlan(given);
        expect(p.preconditions, `${targets.join(',')} with ${variant}`).toEqual([]);
        expect([...p.instances.get('google_cloudfunctions2_function.broker')!.keys()].sort()).toEqual(
          [...targets].sort(),
        );
        plans++;
      }
    }
    expect(plans).toBe(63 + 31 + 48);
  });
});

/** Seconds in a Terraform duration such as "120s" or "10m". */
const seconds = (d: unknown) => {
  const m = /^(\d+)([sm])$/.exec(String(d));
  if (!m) throw new Error(`not a duration: ${String(d)}`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
};
const triggerRefs = (address: string) => refs(attr(resource(address).body, 'triggers'));

describe('issue 22: waits before what would fail on a fresh project', () => {
  it('creates the alert policies only after a sleep that starts once the log-based metrics exist', () => {
    const metrics = [...MODULE.resources.keys()].filter((k) => k.startsWith('google_logging_metric.'));
    expect(metrics.length).toBe(2);
    // The sleep is (re)created when a metric is: its triggers name each one.
    for (const metric of metrics)
      expect(
        triggerRefs('time_sleep.metrics_propagation').some((r) => r.startsWith(`${metric}.`)),
        metric,
      ).toBe(true);
    const alerts = [...MODULE.resources.keys()].filter((k) =>
      k.startsWith('google_monitoring_alert_policy.'),
    );
    expect(alerts.length).toBe(3);
    for (const alert of alerts) expect(dependsOn(alert), alert).toContain('time_sleep.metrics_propagation');
    // The API says up to 10 minutes; the default waits that long.
    const p = fullPlan(SINGLE);
    expect(
      seconds(p.instances.get('time_sleep.metrics_propagation')!.get('')!['create_duration']),
    ).toBeGreaterThanOrEqual(600);
    expect(variables({ ...SINGLE, metric_propagation_wait: 'ten minutes' }).failures.join()).toMatch(
      /duration/,
    );
  });

  it('creates the service agents the module relies on, with google-beta (generateServiceIdentity)', () => {
    expect(attr(resource('google_project_service_identity.agents').body, 'provider')).toEqual({
      k: 'name',
      name: 'google-beta',
    });
    const agents = (given: Record<string, unknown>) =>
      [...fullPlan(given).instances.get('google_project_service_identity.agents')!.keys()].sort();
    expect(agents(NO_JOB)).toEqual([
      'cloudbuild.googleapis.com',
      'cloudfunctions.googleapis.com',
      'run.googleapis.com',
    ]);
    expect(agents(SINGLE)).toEqual([
      'cloudbuild.googleapis.com',
      'cloudfunctions.googleapis.com',
      'cloudscheduler.googleapis.com',
      'run.googleapis.com',
      'vpcaccess.googleapis.com',
    ]);
    // A job on a connector of the operator's own needs no VPC Access agent of ours.
    const ownConnector = {
      ...SINGLE,
      delegated_job: {
        ...(SINGLE['delegated_job'] as object),
        vpc_connector: 'projects/acme-prod/locations/europe-west1/connectors/shared',
      },
    };
    expect(agents(ownConnector)).not.toContain('vpcaccess.googleapis.com');
  });

  it('waits for IAM after the build grants, the secret grants and the agents, before any build, deploy or schedule', () => {
    const t = triggerRefs('time_sleep.iam_propagation');
    for (const grant of [
      'google_project_iam_member.build_logs',
      'google_project_iam_member.build_staged_source',
      'google_artifact_registry_repository_iam_member.build_writer',
      'google_storage_bucket_iam_member.build_source_reader',
      'google_secret_manager_secret_iam_member.cache_secrets_access',
      'google_project_service_identity.agents',
    ])
      expect(
        t.some((r) => r.startsWith(grant)),
        grant,
      ).toBe(true);
    for (const waits of [
      'google_cloudfunctions2_function.broker',
      'google_cloudfunctions2_function.job',
      'google_cloud_scheduler_job.delegated',
    ])
      expect(dependsOn(waits), waits).toContain('time_sleep.iam_propagation');
    expect(dependsOn('google_vpc_access_connector.job')).toContain('google_project_service_identity.agents');
    // Google: typically 2 minutes.
    expect(
      seconds(fullPlan(SINGLE).instances.get('time_sleep.iam_propagation')!.get('')!['create_duration']),
    ).toBe(120);
  });
});

describe('issue 22: secrets that rotate without breaking what serves, wherever they may live', () => {
  const versions = () =>
    [...MODULE.resources.keys()].filter((k) => k.startsWith('google_secret_manager_secret_version.'));
  const secrets = () =>
    [...MODULE.resources.keys()].filter((k) => k.startsWith('google_secret_manager_secret.'));

  it('creates each new secret version before the old one is destroyed', () => {
    expect(versions().length).toBeGreaterThanOrEqual(3);
    for (const v of versions()) {
      const lc = lifecycle(v);
      expect(lc && attr(lc, 'create_before_destroy'), v).toEqual({ k: 'lit', v: true });
    }
    // The functions read the cache key at the version Terraform wrote (a new revision per rotation), so the
    // new version must exist before they update, and the old one must outlive that update: what
    // create_before_destroy orders (create new, update dependents, destroy old).
    const fn = resource('google_cloudfunctions2_function.broker');
    const service = fn.body.blocks.find((b) => b.type === 'service_config')!.body;
    const pinned = service.blocks.find((b) => b.type === 'secret_environment_variables')!.body;
    expect(refs(attr(pinned, 'version'))).toEqual(['google_secret_manager_secret_version.cache_key.version']);
  });

  it('disables an old version at once and destroys it a day later (delayed destruction), not at once', () => {
    const p = fullPlan(SINGLE);
    for (const s of secrets())
      for (const [key, planned] of p.instances.get(s)!)
        expect(planned['version_destroy_ttl'], `${s}[${key}]`).toBe('86400s');
    for (const v of versions())
      for (const [key, planned] of p.instances.get(v)!)
        expect(planned['deletion_policy'], `${v}[${key}]`).toBe('DELETE');
    expect(variables({ ...SINGLE, secret_version_destroy_ttl: '1d' }).failures.join()).toMatch(
      /secret_version_destroy_ttl/,
    );
    const immediate = fullPlan({ ...SINGLE, secret_version_destroy_ttl: null });
    expect(planned(immediate, 'google_secret_manager_secret.cache_key')['version_destroy_ttl']).toBeNull();
  });

  it('replicates automatically by default, and in the given regions only with secret_locations', () => {
    const replication = (given: Record<string, unknown>) => {
      const p = fullPlan(given);
      return secrets().flatMap((s) =>
        [...p.instances.get(s)!.values()].map((planned) => blocksOf(planned, 'replication')[0]!),
      );
    };
    const auto = replication(SINGLE);
    expect(auto.length).toBe(3); // reporting-key, the cache key, the Upstash token
    for (const r of auto) {
      expect(blocksOf(r, 'auto')).toEqual([{}]);
      expect(blocksOf(r, 'user_managed')).toEqual([]);
    }
    for (const r of replication({ ...SINGLE, secret_locations: ['europe-west1'] })) {
      expect(blocksOf(r, 'auto')).toEqual([]);
      expect(blocksOf(r, 'user_managed')).toEqual([{ replicas: [{ location: 'europe-west1' }] }]);
    }
    for (const bad of [[], ['global'], ['europe_west1']])
      expect(variables({ ...SINGLE, secret_locations: bad }).failures.join(), JSON.stringify(bad)).toMatch(
        /secret_locations/,
      );
  });
});

describe('issue 22: the nits', () => {
  it('keeps the newest images and deletes the rest after 30 days (an image repository cleanup policy)', () => {
    const repo = planned(fullPlan(SINGLE), 'google_artifact_registry_repository.functions');
    expect(repo['cleanup_policy_dry_run']).toBe(false);
    const policies = blocksOf(repo, 'cleanup_policies');
    expect(policies.map((c) => [c['id'], c['action']])).toEqual([
      ['keep-newest', 'KEEP'],
      ['delete-older-than-30-days', 'DELETE'],
    ]);
    expect(blocksOf(policies[0]!, 'most_recent_versions')).toEqual([{ keep_count: 5 }]);
    expect(blocksOf(policies[1]!, 'condition')).toEqual([{ tag_state: 'ANY', older_than: '2592000s' }]);
  });

  it('finds the package from the module directory, whatever the working directory, and says when it is missing', () => {
    const given = { ...SINGLE, source_dir: null };
    const p = fullPlan(given);
    const dir = String(planned(p, 'data.archive_file.source')['source_dir']);
    expect(resolve(dir)).toBe(join(ROOT, '.tmp', 'package'));
    // Not relative to the working directory: path.module is part of it.
    expect(dir.startsWith(DIR)).toBe(true);
    const missing = fullPlan({ ...SINGLE, source_dir: join(tmpdir(), 'no-package-here') });
    expect(missing.preconditions.join('\n')).toMatch(/No packaged broker .* run `npm ci && npm run package`/);
    expect(fullPlan(SINGLE).preconditions).toEqual([]);
  });

  it('uploads the package as application/zip', () => {
    expect(planned(fullPlan(SINGLE), 'google_storage_bucket_object.source')['content_type']).toBe(
      'application/zip',
    );
  });

  it('ignores the dashboard permadiff, and replaces the dashboard when the JSON this module writes changes', () => {
    const lc = lifecycle('google_monitoring_dashboard.broker')!;
    expect(refs(attr(lc, 'ignore_changes'))).toEqual(['dashboard_json']);
    expect(refs(attr(lc, 'replace_triggered_by'))).toEqual(['terraform_data.dashboard']);
    // Metric names are arguments, known at plan; their ids are not.
    const known = {
      google_logging_metric: {
        requests: { name: 'token-broker/requests', id: UNKNOWN },
        mint_latency: { name: 'token-broker/mint_latency', id: UNKNOWN },
      },
    };
    const p = fullPlan(SINGLE, known);
    const json = String(planned(p, 'google_monitoring_dashboard.broker')['dashboard_json']);
    expect(JSON.parse(json).displayName).toBe('Token broker (token-broker)');
    expect(planned(p, 'terraform_data.dashboard')['input']).toBe(
      createHash('sha256').update(json).digest('hex'),
    );
  });

  it('refuses a key file for a secret no keyed account has, which used to fail the plan with an index error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tf-keys-'));
    writeFileSync(join(dir, 'key.json'), '{}');
    const base = { ...SINGLE, manage_key_versions_in_terraform: true };
    const unknown = { ...base, service_account_key_files: { 'nope-key': join(dir, 'key.json') } };
    expect(variables(unknown).failures.join('\n')).toMatch(
      /every key must be the secret_id of a keyed account/,
    );
    // Past the validation (as before it existed), the plan itself fails on the index.
    expect(() => planModule(MODULE, variableValues(MODULE, unknown))).toThrow(
      /google_secret_manager_secret_version\.key\["nope-key"\]\.secret .*no element "nope-key"/,
    );
    const absent = { ...base, service_account_key_files: { 'reporting-key': join(dir, 'absent.json') } };
    expect(variables(absent).failures.join('\n')).toMatch(/a key file does not exist/);
    const good = fullPlan({ ...base, service_account_key_files: { 'reporting-key': join(dir, 'key.json') } });
    expect([...good.instances.get('google_secret_manager_secret_version.key')!.keys()]).toEqual([
      'reporting-key',
    ]);
  });

  it('labels what takes labels', () => {
    const p = fullPlan({ ...SINGLE, labels: { team: 'platform' } });
    const expected = {
      team: 'platform',
      app: 'token-broker',
      deployment: 'token-broker',
      'managed-by': 'terraform',
    };
    for (const [address, attribute] of [
      ['google_cloudfunctions2_function.broker', 'labels'],
      ['google_cloudfunctions2_function.job', 'labels'],
      ['google_secret_manager_secret.key', 'labels'],
      ['google_secret_manager_secret.cache_key', 'labels'],
      ['google_secret_manager_secret.upstash_token', 'labels'],
      ['google_storage_bucket.source', 'labels'],
      ['google_artifact_registry_repository.functions', 'labels'],
      ['google_monitoring_alert_policy.server_errors', 'user_labels'],
    ] as const)
      for (const [key, value] of p.instances.get(address)!)
        expect(value[attribute], `${address}[${key}]`).toEqual(expected);
    expect(variables({ ...SINGLE, labels: { Team: 'x' } }).failures.join()).toMatch(/labels:/);
  });

  it('notifies the alert emails, and warns at plan when the alerts would reach nobody', () => {
    const silent = fullPlan({ ...SINGLE, alert_emails: [] });
    expect(silent.checks).toEqual([
      expect.stringMatching(/^check\.alerts_reach_someone: The alert policies have no notification channel/),
    ]);
    const p = fullPlan({ ...SINGLE, alert_emails: ['ops@acme.example'] });
    expect(p.checks).toEqual([]);
    expect(fullPlan(SINGLE).checks).toEqual([]); // the examples name someone
    expect(fullPlan(MULTI).checks).toEqual([]);
    expect(planned(p, 'google_monitoring_notification_channel.email', 'ops@acme.example')).toMatchObject({
      type: 'email',
      labels: { email_address: 'ops@acme.example' },
    });
    // The channel's id is known after apply: the list holds it.
    for (const alert of ['upstream_unavailable', 'server_errors', 'denial_spike'])
      expect(planned(p, `google_monitoring_alert_policy.${alert}`)['notification_channels']).toEqual([
        UNKNOWN,
      ]);
    expect(
      planned(
        fullPlan({
          ...SINGLE,
          alert_emails: [],
          alert_notification_channels: ['projects/acme-prod/notificationChannels/1'],
        }),
        'google_monitoring_alert_policy.server_errors',
      )['notification_channels'],
    ).toEqual(['projects/acme-prod/notificationChannels/1']);
  });
});

describe('issue 22: two lists of callers', () => {
  const withGrantTo = (caller: string, extra: Record<string, unknown> = {}) => {
    const policy = SINGLE['policy'] as { grants: unknown[] };
    return {
      ...SINGLE,
      alert_emails: ['ops@acme.example'],
      ...extra,
      policy: {
        ...policy,
        grants: [
          ...policy.grants,
          {
            callers: [caller],
            serviceAccounts: ['reporting@acme-prod.iam.gserviceaccount.com'],
            scopes: ['x'],
          },
        ],
      },
    };
  };
  it('warns at plan when the policy grants a caller that Cloud Run will not let in', () => {
    expect(fullPlan({ ...SINGLE, alert_emails: ['ops@acme.example'] }).checks).toEqual([]); // the job's account is the module's
    expect(fullPlan(withGrantTo('newcomer@acme-prod.iam.gserviceaccount.com')).checks).toEqual([
      expect.stringMatching(
        /^check\.granted_callers_may_invoke: .*not in callers.*: newcomer@acme-prod\.iam\.gserviceaccount\.com\./,
      ),
    ]);
    // Patterns cannot be checked; targets open to all need no invoker binding.
    expect(fullPlan(withGrantTo('*@acme.com')).checks).toEqual([]);
    expect(
      fullPlan(withGrantTo('newcomer@acme-prod.iam.gserviceaccount.com', { sts_invoker: 'allUsers' })).checks,
    ).toEqual([]);
    expect(README).toMatch(/Two lists of callers, two gates/);
  });
});

describe('issue 22: a deploy guide a laptop can follow', () => {
  const section = (title: string) => {
    const start = README.indexOf(`\n## ${title}`);
    expect(start, title).toBeGreaterThan(0);
    const end = README.indexOf('\n## ', start + 4);
    return README.slice(start, end < 0 ? undefined : end);
  };

  it('lists what must exist before Terraform: tools, quota project, the accounts, impersonation rights, the cache, a backend', () => {
    const step0 = README.slice(
      README.indexOf('### 0. Before Terraform'),
      README.indexOf('### 1. Build the package'),
    );
    for (const fact of [
      '`jq`',
      'set-quota-project',
      'The accounts must already exist',
      'gcloud iam service-accounts create',
      'roles/iam.serviceAccountTokenCreator',
      'Create database',
      'TF_VAR_upstash_redis_rest_token',
      'enable_shared_cache = false',
      'backend "gcs"',
      '--versioning',
    ])
      expect(step0, fact).toContain(fact);
  });

  it("has step 6 run from a laptop through the module's in-VPC caller, reading tokeninfo from its log", () => {
    const step6 = README.slice(README.indexOf('### 6.'), README.indexOf('### 7.'));
    expect(step6).toMatch(/from your laptop/);
    expect(step6).toContain('terraform output -json smoke_test');
    expect(step6).toContain('gcloud run jobs execute');
    expect(step6).toContain('tokeninfo');
    expect(step6).toContain('terraform output token_url');
  });

  it('states the idle and per-million-requests costs, with their prices and the date they were read', () => {
    const cost = section('Cost');
    expect(cost).toMatch(/December 2026/);
    expect(cost).toMatch(/\*\*Idle\*\*/);
    expect(cost).toMatch(/\*\*Per million requests\*\*/);
    expect(cost).toMatch(/about \$17 to \$19/);
    expect(cost).toMatch(/about \$5/);
    for (const price of [
      '$0.008376 per hour',
      '$1.50 per condition',
      '$0.40 per million requests',
      '$0.000024 per vCPU-second',
      '$0.50 per GiB',
      '$0.20 per 100,000 commands',
    ])
      expect(cost, price).toContain(price);
  });

  it('says how to tear down and what survives, and how to upgrade the broker, the cache format and the provider', () => {
    const teardown = section('Teardown');
    expect(teardown).toContain('terraform destroy');
    for (const survivor of [
      'disable_on_destroy = false',
      'the keys you created',
      'gcf-v2-sources',
      'retention',
    ])
      expect(teardown, survivor).toContain(survivor);
    const upgrade = section('Upgrade');
    expect(upgrade).toMatch(/\*\*A new broker version\.\*\*/);
    expect(upgrade).toMatch(/\*\*The shared cache across a rolling deploy\.\*\*/);
    expect(upgrade).toContain('tb:v1:');
    expect(upgrade).toMatch(/\*\*Provider 7\.x\.\*\*/);
  });
});
