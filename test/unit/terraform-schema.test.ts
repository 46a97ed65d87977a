import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@cdktf/hcl2json';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../support/tf-eval.js';
import { checkModule, loadSchemas, type ProviderSchema } from '../support/tf-schema.js';
import { readModule } from '../support/tf-syntax.js';

const DIR = join(fileURLToPath(new URL('../../', import.meta.url)), 'terraform');
const texts = Object.fromEntries(
  readdirSync(DIR)
    .filter((f) => f.endsWith('.tf'))
    .map((f) => [f, readFileSync(join(DIR, f), 'utf8')]),
);
let schemas: Record<string, ProviderSchema>;
let loadMs = 0;

beforeAll(() => {
  const started = performance.now();
  schemas = loadSchemas();
  loadMs = performance.now() - started;
});

/** The problems of the module with one file's text changed by `edit` (which must change something). */
function problemsAfter(file: string, edit: (text: string) => string): string[] {
  const changed = edit(texts[file]!);
  expect(changed, 'the mutation applies').not.toBe(texts[file]);
  return checkModule(readModule('', { ...texts, [file]: changed }), schemas);
}

describe('terraform/ against the providers published schemas', () => {
  it('loads the google 6.50 schema from the CDKTF bindings quickly enough for every test run', () => {
    expect(schemas['google']!.resources.size).toBeGreaterThan(1000);
    expect(
      schemas['google']!.resources.get('google_cloudfunctions2_function')!.blocks.has('build_config'),
    ).toBe(true);
    expect(loadMs).toBeLessThan(15_000);
  });

  it('every file is valid HCL to the official parser (hcl2json)', async () => {
    for (const [file, text] of Object.entries(texts))
      await expect(parse(file, text)).resolves.toBeTypeOf('object');
  });

  it('has no unsupported argument, block, missing requirement or broken reference', () => {
    const m = readModule(DIR);
    expect(m.resources.size).toBeGreaterThan(25);
    expect(checkModule(m, schemas)).toEqual([]);
  });

  it('uses write-only arguments the schema source has, and says where a schema comes from elsewhere', () => {
    const version = schemas['google']!.resources.get('google_secret_manager_secret_version')!;
    expect(version.args.has('secret_data_wo')).toBe(true);
    expect(version.args.has('secret_data_wo_version')).toBe(true);
    // The CDKTF bindings have no ephemeral resources: random_bytes comes from the explicit, documented entry.
    expect([...schemas['random']!.ephemeral.keys()]).toEqual(['random_bytes']);
    expect(readFileSync(fileURLToPath(new URL('../support/tf-schema.ts', import.meta.url)), 'utf8')).toMatch(
      /ephemeral_bytes\.go/,
    );
  });

  it('checks time_sleep against time 0.13.1, and the one google-beta resource and terraform_data against their sources', () => {
    expect(schemas['time']!.resources.get('time_sleep')!.args.has('create_duration')).toBe(true);
    expect(schemas['time']!.resources.get('time_sleep')!.args.has('triggers')).toBe(true);
    expect([...schemas['google-beta']!.resources.keys()]).toEqual(['google_project_service_identity']);
    // google-beta's provider block is google's.
    expect(schemas['google-beta']!.provider).toBe(schemas['google']!.provider);
    expect(schemas['google']!.resources.has('google_project_service_identity')).toBe(false); // beta only
    const source = readFileSync(fileURLToPath(new URL('../support/tf-schema.ts', import.meta.url)), 'utf8');
    expect(source).toMatch(/resource_project_service_identity\.go/);
    expect(source).toMatch(/resource_data\.go/);
  });

  it('sets local.labels on every resource whose schema takes labels', () => {
    const m = readModule(DIR);
    const labelled: string[] = [];
    for (const [address, b] of m.resources) {
      const schema = schemas['google']!.resources.get(b.labels[0]!);
      if (!schema) continue;
      // A notification channel's `labels` are its settings (the email address); its labels are user_labels.
      const name = schema.args.has('user_labels')
        ? 'user_labels'
        : schema.args.has('labels')
          ? 'labels'
          : undefined;
      if (!name) continue;
      const value = b.body.attrs.find((a) => a.name === name)?.expr;
      expect(value && JSON.stringify(value), `${address}.${name}`).toContain('"name":"labels"');
      labelled.push(address);
    }
    expect(labelled.length).toBeGreaterThanOrEqual(10);
  });

  it('allows only provider versions whose schema it checks', () => {
    const require = createRequire(import.meta.url);
    const bound = (pkg: string) =>
      (require(`${pkg}/package.json`) as { cdktf: { provider: { version: string } } }).cdktf.provider.version;
    const m = readModule(DIR);
    const tf = m.blocks.find((b) => b.type === 'terraform')!.body;
    const rp = tf.blocks.find((b) => b.type === 'required_providers')!.body;
    const constraint = (p: string) =>
      String((evaluate(rp.attrs.find((a) => a.name === p)!.expr, {}) as Record<string, string>)['version']);
    // google 6.50.0 is the bindings' version and the last 6.x release: ">= 6.50, < 7.0" is that one version.
    expect(bound('@cdktf/provider-google')).toBe('6.50.0');
    for (const p of ['google', 'google-beta']) expect(constraint(p)).toBe('>= 6.50, < 7.0');
    expect(bound('@cdktf/provider-time')).toBe('0.13.1');
    expect(constraint('time')).toBe('>= 0.13.1, < 0.14.0');
    // 7.x is not allowed until a 7.x schema is checked; the README says what it would bring.
    const readme = readFileSync(join(DIR, 'README.md'), 'utf8');
    expect(readme).toMatch(/\*\*Provider 7\.x\.\*\* Not allowed yet/);
    expect(readme).toContain('direct_vpc_network_interface');
  });

  // Each mutation is what a person might really get wrong; the check must name it.
  it.each([
    [
      'a misspelt argument',
      'main.tf',
      (t: string) => t.replace('ingress_settings                 =', 'ingres_settings                  ='),
      /google_cloudfunctions2_function\.broker\.service_config\.ingres_settings \(line \d+\): unsupported argument/,
    ],
    [
      'an unknown resource type',
      'main.tf',
      (t: string) =>
        t.replace(
          'resource "google_cloudfunctions2_function" "broker"',
          'resource "google_cloudfunction2_function" "broker"',
        ),
      /unknown resource type google_cloudfunction2_function/,
    ],
    [
      'a block in the wrong place (secret env var under build_config)',
      'main.tf',
      (t: string) =>
        t.replace(
          '  build_config {\n',
          '  build_config {\n    secret_environment_variables {\n      key        = "X"\n      project_id = var.project_id\n      secret     = "s"\n      version    = "1"\n    }\n',
        ),
      /build_config\.secret_environment_variables \(line \d+\): unsupported block type/,
    ],
    [
      'an argument written as a block',
      'build.tf',
      (t: string) => t.replace('  format                 = "DOCKER"', '  format {\n  }'),
      /google_artifact_registry_repository\.functions\.format \(line \d+\): is an argument/,
    ],
    [
      'a missing required argument',
      'main.tf',
      (t: string) =>
        t.replace(/ {2}role {5}= "roles\/run\.invoker"\n(?= {2}member {3}= each\.value\.member)/, ''),
      /google_cloud_run_v2_service_iam_member\.invoker: the argument role is required/,
    ],
    [
      'a missing required block',
      'main.tf',
      (t: string) => t.replace(/ {2}replication \{\n[\s\S]*?\n {2}\}\n/, ''),
      /google_secret_manager_secret\.key: at least one replication block is required/,
    ],
    [
      'an undeclared variable',
      'main.tf',
      (t: string) => t.replace('var.max_instances', 'var.max_instance'),
      /var\.max_instance is not declared/,
    ],
    [
      'an undeclared local',
      'job.tf',
      (t: string) => t.replace('local.token_url\n', 'local.token_url_for_job\n'),
      /local\.token_url_for_job is not declared/,
    ],
    [
      'an undeclared resource',
      'main.tf',
      (t: string) => t.replace('google_storage_bucket.source.name', 'google_storage_bucket.sources.name'),
      /google_storage_bucket\.sources is not declared/,
    ],
    [
      'an attribute the resource does not have',
      'job.tf',
      (t: string) =>
        t.replace(
          'uri         = google_cloudfunctions2_function.job[each.key].url',
          'uri         = google_cloudfunctions2_function.job[each.key].uri',
        ),
      /google_cloudfunctions2_function\.job has no attribute uri/,
    ],
    [
      'a provider argument the provider does not have',
      'versions.tf',
      (t: string) => t.replace('  region  = var.region\n}', '  regoin  = var.region\n}'),
      /provider\.google\.regoin \(line \d+\): unsupported argument/,
    ],
    [
      'an ephemeral value where Terraform would have to save it',
      'policy.tf',
      (t: string) =>
        t.replace(
          'BROKER_REFRESH_SKEW_SECONDS = tostring(var.refresh_skew_seconds)',
          'BROKER_REFRESH_SKEW_SECONDS = tostring(var.refresh_skew_seconds)\n      UPSTASH_REDIS_REST_TOKEN    = local.upstash_token',
        ),
      /environment_variables \(line \d+\): the ephemeral local\.function_env can only go to write-only arguments/,
    ],
    [
      'an ephemeral variable read by another variable',
      'variables.tf',
      (t: string) =>
        t.replace(
          'condition     = !var.enable_shared_cache || var.create_upstash_database || var.upstash_redis_rest_url != ""',
          'condition     = !var.enable_shared_cache || var.create_upstash_database || var.upstash_redis_rest_token != null',
        ),
      /variable\.enable_shared_cache\.validation\.condition \(line \d+\): the ephemeral var\.upstash_redis_rest_token/,
    ],
    [
      'a nested attribute the block does not have',
      'main.tf',
      (t: string) =>
        t.replace(
          'google_cloudfunctions2_function.broker[each.value.target].service_config[0].service',
          'google_cloudfunctions2_function.broker[each.value.target].service_config[0].servce',
        ),
      /google_cloudfunctions2_function\.broker\.service_config has no attribute servce/,
    ],
    [
      'a beta-only resource without provider = google-beta',
      'propagation.tf',
      (t: string) => t.replace('  provider   = google-beta\n', ''),
      /unknown resource type google_project_service_identity/,
    ],
    [
      'an argument time_sleep does not have',
      'monitoring.tf',
      (t: string) =>
        t.replace('create_duration = var.metric_propagation_wait', 'duration = var.metric_propagation_wait'),
      /time_sleep\.metrics_propagation\.duration \(line \d+\): unsupported argument/,
    ],
  ] as const)('fails on %s', (_name, file, edit, expected) => {
    const problems = problemsAfter(file, edit);
    expect(
      problems.some((p) => expected.test(p)),
      problems.join('\n'),
    ).toBe(true);
  });
});
