import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@cdktf/hcl2json';
import { beforeAll, describe, expect, it } from 'vitest';
import { JOB_TARGET, TARGET_ROUTES } from '../../functions/handlers.js';
import { loadModule, type Module, strings, unresolvedReferences } from '../support/hcl.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = join(ROOT, 'terraform');
let m: Module;

beforeAll(async () => {
  m = await loadModule(DIR);
});

const resourcesOf = (type: string) => [...m.resources].filter(([k]) => k.startsWith(`${type}.`));

describe('terraform (checked without a terraform binary)', () => {
  it('resolves every variable, local, resource and data reference', () => {
    expect(unresolvedReferences(m)).toEqual([]);
  });

  it('catches a broken reference (the checker itself works)', async () => {
    const bad = await loadModule('', {
      'bad.tf': [
        'variable "a" {',
        '  type = string',
        '}',
        'locals {',
        '  x = var.b',
        '}',
        'resource "google_x" "y" {',
        '  n  = local.z',
        '  m  = google_x.nope.id',
        '  d  = data.google_q.r.id',
        '  ok = var.a',
        '}',
      ].join('\n'),
    });
    expect(unresolvedReferences(bad).sort()).toEqual([
      'bad.tf: locals[0].x: var.b is not declared',
      'bad.tf: resource.google_x.y[0].d: data.google_q.r is not declared',
      'bad.tf: resource.google_x.y[0].m: google_x.nope is not declared',
      'bad.tf: resource.google_x.y[0].n: local.z is not declared',
    ]);
  });

  it('uses entry points that the built source really registers, on nodejs22', () => {
    const functions = resourcesOf('google_cloudfunctions2_function');
    expect(functions.length).toBeGreaterThanOrEqual(2);
    // Targets a for_each over var.targets may take: the ones its validation allows.
    const validation = JSON.stringify(m.variables.get('targets')?.['validation']);
    const allowed = [...(/contains\(\[([^\]]*)\]/.exec(validation)?.[1] ?? '').matchAll(/\\"(\w+)\\"/g)].map(
      (x) => x[1]!,
    );
    expect(allowed.sort()).toEqual(Object.keys(TARGET_ROUTES).sort());
    const entryPoints = new Set<string>();
    for (const [name, body] of functions) {
      const build = (body['build_config'] as Record<string, unknown>[])[0]!;
      expect(build['runtime'], name).toBe('nodejs22');
      const ep = String(build['entry_point']);
      // biome-ignore lint/suspicious/noTemplateCurlyInString: an HCL interpolation, as hcl2json writes it
      if (ep === '${each.value}') for (const t of allowed) entryPoints.add(t);
      else entryPoints.add(ep);
    }
    expect(entryPoints).toContain(JOB_TARGET);
    // Load the deployed bundle as Cloud Functions would, and ask the framework what it registered.
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
      return JSON.parse(out.trim().split('\n').pop()!) as string[];
    };
    const brokerTargets = [...entryPoints].filter((t) => t !== JOB_TARGET);
    const policy = {
      serviceAccounts: [{ email: 'a@p.iam.gserviceaccount.com', key: 'file:k.json' }],
      grants: [],
    };
    expect(
      registered(brokerTargets, {
        BROKER_POLICY: JSON.stringify(policy),
        BROKER_AUDIENCE: 'https://x.example',
        // The broker fetches the JWKS at start: keep it on loopback (nothing listens there).
        BROKER_JWKS_URL: 'http://127.0.0.1:9/certs',
      }),
    ).toEqual(brokerTargets);
    expect(registered([JOB_TARGET], { FUNCTION_TARGET: JOB_TARGET })).toEqual([JOB_TARGET]);
  });

  it('grants no primitive role and no project-wide secret access', () => {
    for (const [path, s] of Object.values(m.files).flatMap((f) => [...strings(f)])) {
      expect(s, path).not.toMatch(/roles\/(owner|editor|viewer)\b/);
    }
    for (const [name, body] of [...m.resources].filter(([k]) =>
      /^google_(project|folder|organization)_iam_/.test(k),
    )) {
      expect(String(body['role']), name).not.toMatch(/secretmanager/);
    }
    const accessors = [...m.resources].filter(([, b]) => b['role'] === 'roles/secretmanager.secretAccessor');
    expect(accessors.length).toBeGreaterThan(0);
    for (const [name] of accessors) expect(name).toMatch(/^google_secret_manager_secret_iam_member\./);
  });

  it('grants run.invoker on the Cloud Run service, never with the function IAM resource', () => {
    expect(
      [...m.resources.keys()].filter((k) => k.startsWith('google_cloudfunctions2_function_iam')),
    ).toEqual([]);
    const invokers = [...m.resources].filter(([, b]) => b['role'] === 'roles/run.invoker');
    expect(invokers.length).toBeGreaterThanOrEqual(3);
    for (const [name, body] of invokers) {
      expect(name).toMatch(/^google_cloud_run_v2_service_iam_member\./);
      expect(String(body['name'])).toMatch(/service_config\[0\]\.service/);
    }
  });

  it('gives no secret a default value', () => {
    for (const [name, v] of m.variables) {
      const secret = v['sensitive'] === true || /token|key|secret|password/.test(name);
      // biome-ignore lint/suspicious/noTemplateCurlyInString: an HCL type, as hcl2json writes it
      if (!secret || String(v['type']) === '${bool}') continue;
      expect(v['default'] ?? null, `variable ${name}`).toBeNull();
    }
    expect(m.variables.get('upstash_redis_rest_token')?.['sensitive']).toBe(true);
  });

  it('pins the google provider to v6 and passes the policy and audience', () => {
    const versions = (m.files['versions.tf']!['terraform'] as Record<string, unknown>[])[0]!;
    const google = (versions['required_providers'] as Record<string, unknown>[])[0]!['google'] as Record<
      string,
      string
    >;
    expect(google['version']).toMatch(/>= ?6\.\d/);
    const env = JSON.stringify(m.resources.get('google_cloudfunctions2_function.broker')?.['service_config']);
    expect(env).toContain('jsonencode(local.policy)');
    expect(env).toContain('BROKER_AUDIENCE');
    expect(env).toContain('UPSTASH_REDIS_REST_TOKEN');
    expect(env).toContain('BROKER_CACHE_KEY');
  });

  it('has examples that set only declared variables', async () => {
    const dir = join(DIR, 'examples');
    const files = readdirSync(dir).filter((f) => f.endsWith('.tfvars'));
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const f of files) {
      const json = (await parse(f, readFileSync(join(dir, f), 'utf8'))) as Record<string, unknown>;
      for (const k of Object.keys(json)) expect(m.variables.has(k), `${f}: ${k}`).toBe(true);
      for (const required of [...m.variables].filter(([, v]) => !('default' in v)).map(([k]) => k)) {
        expect(Object.keys(json), `${f} sets ${required}`).toContain(required);
      }
    }
  });
});
