/**
 * README step 6 from a laptop: the in-VPC smoke test terraform/smoke.tf
 * creates (a Cloud Run job with Direct VPC egress), planned for both
 * layouts, and its script run against stand-ins for the metadata server,
 * the broker and Google's tokeninfo endpoint.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decide } from '../../shared/policy/evaluate.js';
import { compilePolicy } from '../../shared/policy/load.js';
import { UNKNOWN } from '../support/tf-eval.js';
import { blocksOf, DIR, fullPlan, MULTI, planned, README, SINGLE, variables } from '../support/tf-module.js';

const SMOKE = { service_account: 'calendar-sync@acme-prod.iam.gserviceaccount.com' };
const CALLER = 'token-broker-smoke@acme-prod.iam.gserviceaccount.com';
const SCRIPT = readFileSync(join(DIR, 'smoke-test.mjs'), 'utf8');

const envOf = (container: Record<string, unknown>) =>
  Object.fromEntries(blocksOf(container, 'env').map((e) => [e['name'], e['value']]));

describe('the smoke test job (README, step 6)', () => {
  it('is an on-demand Cloud Run job inside the VPC that asks the token function for a token', () => {
    const p = fullPlan({ ...SINGLE, smoke_test: SMOKE });
    const job = planned(p, 'google_cloud_run_v2_job.smoke', 'smoke');
    expect(job['name']).toBe('token-broker-smoke');
    expect(job['deletion_protection']).toBe(false);
    const task = blocksOf(blocksOf(job, 'template')[0]!, 'template')[0]!;
    const container = blocksOf(task, 'containers')[0]!;
    expect(container['command']).toEqual(['node', '--input-type=module', '-e']);
    expect(container['args']).toEqual([SCRIPT]);
    expect(envOf(container)).toEqual({
      BROKER_URL: 'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-token',
      BROKER_AUDIENCE: 'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-token',
      SMOKE_REQUEST: JSON.stringify({
        scopes: ['https://www.googleapis.com/auth/userinfo.email'],
        serviceAccount: SMOKE.service_account,
      }),
    });
    // Direct VPC egress, all traffic, through a subnet with Private Google Access: its calls are internal.
    const vpc = blocksOf(task, 'vpc_access')[0]!;
    expect(vpc['egress']).toBe('ALL_TRAFFIC');
    expect(blocksOf(vpc, 'network_interfaces')).toEqual([{ network: UNKNOWN, subnetwork: UNKNOWN }]);
    expect(planned(p, 'google_compute_subnetwork.smoke', 'smoke')['private_ip_google_access']).toBe(true);
    expect(planned(p, 'google_compute_subnetwork.smoke', 'smoke')['ip_cidr_range']).toBe('10.8.16.0/26');
    expect([...p.instances.get('google_vpc_access_connector.job')!.keys()]).toEqual(['job']); // the job's, not ours
  });

  it('calls /token on the broker function in the multi-tenant layout', () => {
    const p = fullPlan({
      ...MULTI,
      smoke_test: { service_account: 'green-tenant@tenant-green.iam.gserviceaccount.com' },
    });
    const task = blocksOf(
      blocksOf(planned(p, 'google_cloud_run_v2_job.smoke', 'smoke'), 'template')[0]!,
      'template',
    )[0]!;
    const env = envOf(blocksOf(task, 'containers')[0]!);
    expect(env['BROKER_URL']).toBe(
      'https://us-central1-platform-prod.cloudfunctions.net/token-broker-broker/token',
    );
    expect(env['BROKER_AUDIENCE']).toBe(
      'https://us-central1-platform-prod.cloudfunctions.net/token-broker-broker',
    );
    expect(p.outputs.get('token_url')).toBe(env['BROKER_URL']);
  });

  it('may invoke the token function and get that one account and scope, per the policy', () => {
    const p = fullPlan({ ...SINGLE, smoke_test: SMOKE });
    expect(planned(p, 'google_cloud_run_v2_service_iam_member.invoker', 'token/smoke')['role']).toBe(
      'roles/run.invoker',
    );
    const env = planned(p, 'google_cloudfunctions2_function.broker', 'token')['service_config'] as Record<
      string,
      unknown
    >[];
    const policy = compilePolicy(
      JSON.parse(
        String(
          env[0]!['environment_variables'] &&
            (env[0]!['environment_variables'] as Record<string, string>)['BROKER_POLICY'],
        ),
      ),
    );
    const ask = (serviceAccount: string, scopes: string[]) =>
      decide(policy, CALLER, {
        action: 'mint',
        request: {
          kind: 'token',
          for: { serviceAccount },
          scopes,
          subject: undefined,
          minLifetimeSeconds: 0,
        },
      }).outcome.allowed;
    expect(ask(SMOKE.service_account, ['https://www.googleapis.com/auth/userinfo.email'])).toBe(true);
    expect(ask(SMOKE.service_account, ['https://www.googleapis.com/auth/calendar.readonly'])).toBe(false);
    expect(
      ask('reporting@acme-prod.iam.gserviceaccount.com', ['https://www.googleapis.com/auth/userinfo.email']),
    ).toBe(false);
    // Without smoke_test, no such grant, account, job or binding.
    const none = fullPlan({ ...SINGLE, smoke_test: null });
    expect(none.instances.get('google_cloud_run_v2_job.smoke')!.size).toBe(0);
    expect(none.instances.get('google_service_account.smoke')!.size).toBe(0);
    expect([...none.instances.get('google_cloud_run_v2_service_iam_member.invoker')!.keys()]).not.toContain(
      'token/smoke',
    );
    expect(none.outputs.get('smoke_test')).toBeNull();
  });

  it('prints the commands to run it and read its log', () => {
    const out = fullPlan({ ...SINGLE, smoke_test: SMOKE }).outputs.get('smoke_test') as Record<
      string,
      string
    >;
    expect(out['execute']).toBe(
      'gcloud run jobs execute token-broker-smoke --project=acme-prod --region=europe-west1 --wait',
    );
    expect(out['read_log']).toContain(
      'resource.labels.job_name="token-broker-smoke" AND jsonPayload.smoke:*',
    );
    expect(README).toContain('gcloud run jobs execute');
  });

  it('refuses an account the broker does not serve, and a layout without a token endpoint', () => {
    expect(
      variables({
        ...SINGLE,
        smoke_test: { service_account: 'nobody@acme-prod.iam.gserviceaccount.com' },
      }).failures.join(),
    ).toMatch(/smoke_test.service_account must be one of the emails in service_accounts/);
    expect(
      variables({
        ...SINGLE,
        delegated_job: null,
        targets: ['jwt', 'sts'],
        smoke_test: SMOKE,
      }).failures.join(),
    ).toMatch(/smoke_test calls the token endpoint/);
  });
});

/** Stand-ins for the metadata server, the broker and tokeninfo, with what each received. */
function standIns(brokerAnswer: { status: number; body: unknown }) {
  const seen: { path: string; headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      seen.push({ path: req.url ?? '', headers: req.headers, body });
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname.endsWith('/service-accounts/default/identity')) {
        res.writeHead(req.headers['metadata-flavor'] === 'Google' ? 200 : 403).end('id-token-of-the-job');
      } else if (url.pathname === '/broker/token') {
        res.writeHead(brokerAnswer.status, {
          'content-type': 'application/json',
          'cache-status': 'broker; fwd=miss',
        });
        res.end(JSON.stringify(brokerAnswer.body));
      } else if (url.pathname === '/tokeninfo') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            email: SMOKE.service_account,
            scope: 'https://www.googleapis.com/auth/userinfo.email',
            expires_in: '3599',
          }),
        );
      } else res.writeHead(404).end();
    });
  });
  return { server, seen };
}

function runScript(port: number): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', SCRIPT],
      {
        env: {
          PATH: process.env['PATH'],
          GCE_METADATA_HOST: `127.0.0.1:${port}`,
          TOKENINFO_URL: `http://127.0.0.1:${port}/tokeninfo`,
          BROKER_URL: `http://127.0.0.1:${port}/broker/token`,
          BROKER_AUDIENCE: 'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-token',
          SMOKE_REQUEST: JSON.stringify({
            serviceAccount: SMOKE.service_account,
            scopes: ['https://www.googleapis.com/auth/userinfo.email'],
          }),
        },
      },
      (err, stdout) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout }),
    );
  });
}

describe('smoke-test.mjs', () => {
  let ok: ReturnType<typeof standIns>;
  let denied: ReturnType<typeof standIns>;
  const listen = (s: Server) =>
    new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  let okPort = 0;
  let deniedPort = 0;
  beforeAll(async () => {
    ok = standIns({
      status: 200,
      body: { access_token: 'ya29.the-minted-token', token_type: 'Bearer', expires_in: 3599 },
    });
    denied = standIns({
      status: 403,
      body: { error: 'access_denied', error_description: 'The policy does not allow this.' },
    });
    okPort = await listen(ok.server);
    deniedPort = await listen(denied.server);
  });
  afterAll(() => {
    ok.server.close();
    denied.server.close();
  });

  it("logs the minted token's tokeninfo, and never a token", async () => {
    const { code, stdout } = await runScript(okPort);
    expect(code).toBe(0);
    const line = JSON.parse(stdout.trim()) as Record<string, unknown>;
    expect(line).toMatchObject({
      severity: 'INFO',
      smoke: 'ok',
      broker_status: 200,
      cache_status: 'broker; fwd=miss',
      tokeninfo: { email: SMOKE.service_account },
    });
    expect(stdout).not.toContain('ya29.the-minted-token');
    expect(stdout).not.toContain('id-token-of-the-job');
    // The ID token went to the broker twice (invoker check and the broker's own), for the function's URL.
    const identity = ok.seen.find((r) => r.path.includes('/identity'))!;
    expect(new URL(identity.path, 'http://x').searchParams.get('audience')).toBe(
      'https://europe-west1-acme-prod.cloudfunctions.net/token-broker-token',
    );
    expect(new URL(identity.path, 'http://x').searchParams.get('format')).toBe('full');
    const broker = ok.seen.find((r) => r.path === '/broker/token')!;
    expect(broker.headers['authorization']).toBe('Bearer id-token-of-the-job');
    expect(broker.headers['x-serverless-authorization']).toBe('Bearer id-token-of-the-job');
    expect(JSON.parse(broker.body)).toEqual({
      serviceAccount: SMOKE.service_account,
      scopes: ['https://www.googleapis.com/auth/userinfo.email'],
    });
  });

  it("logs the broker's refusal and fails the task", async () => {
    const { code, stdout } = await runScript(deniedPort);
    expect(code).toBe(1);
    expect(JSON.parse(stdout.trim())).toMatchObject({
      severity: 'ERROR',
      smoke: 'failed',
      broker_status: 403,
      error: 'access_denied',
    });
    expect(denied.seen.some((r) => r.path.startsWith('/tokeninfo'))).toBe(false);
  });
});
