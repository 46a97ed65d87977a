import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { GoogleAuth } from 'google-auth-library';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetadataServer } from '../../infra/google/metadata.js';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { main as cli } from '../../packages/client/src/cli/broker-token.js';
import { pythonAvailable, runPython } from '../support/python.js';
import { importStorage8, storage8Available } from '../support/storage8.js';
import {
  AUDIENCE,
  BIGQUERY,
  BILLING,
  BLUE,
  CALENDAR,
  CHAINED,
  examplePolicy,
  KEYLESS,
  OPS,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  SYNC_JOB,
  startStack,
  UNGRANTED,
} from './support/stack.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';

let stack: Stack;
let broker: InProcessBroker;
let workload: MetadataServer;
let billing: string;

/** The scopes @google-cloud/storage always asks for; a grant for them lets a real Storage client through. */
const STORAGE_SCOPES = [
  'https://www.googleapis.com/auth/iam',
  'https://www.googleapis.com/auth/cloud-platform',
  'https://www.googleapis.com/auth/devstorage.full_control',
];

beforeAll(async () => {
  const policy = examplePolicy();
  (policy['grants'] as unknown[]).push({
    callers: [BILLING],
    serviceAccounts: [REPORTING],
    scopes: STORAGE_SCOPES,
  });
  stack = await startStack({ policy });
  broker = await stack.serveBroker('broker');
  // The caller's own instance: Google's libraries fetch its ID token from here (the URL source).
  workload = await stack.google.startMetadataServer({ email: BILLING });
  billing = await stack.callerToken(BILLING);
});
afterAll(async () => stack?.close());

const stsUrl = () => `${broker.url}/sts`;

type Source = { file: string } | { metadata: MetadataServer } | { executable: string };

/** Writes an `external_account` credential file with `broker-token credential-config`, the command callers use. */
async function credentialFile(name: string, serviceAccount: string, source: Source): Promise<string> {
  const path = join(stack.dir, `${name}.json`);
  const args = ['credential-config', '--url', broker.url, '--impersonate-service-account', serviceAccount];
  args.push('--broker-audience', AUDIENCE, '--output-file', path);
  const env: Record<string, string> = {};
  if ('file' in source) args.push('--credential-source-file', source.file);
  else if ('metadata' in source) {
    args.push('--credential-source-metadata');
    env['GCE_METADATA_HOST'] = source.metadata.host;
  } else args.push('--executable-command', source.executable, '--executable-timeout-millis', '10000');
  const errors: string[] = [];
  expect(
    await cli(
      args,
      env,
      () => {},
      (s) => errors.push(s),
    ),
  ).toBe(0);
  expect(errors).toEqual([`broker-token: wrote the credential configuration to ${path}`]);
  const written = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  expect(written).toMatchObject({
    type: 'external_account',
    audience: `//token-broker/serviceAccounts/${serviceAccount}`,
    subject_token_type: ID_TOKEN,
    token_url: stsUrl(),
  });
  return path;
}

/** The caller's ID token in a file, with the trailing newline a real file has. */
function tokenFile(name: string, token: string): string {
  const path = join(stack.dir, `${name}.token`);
  writeFileSync(path, `${token}\n`);
  return path;
}

async function tokeninfo(token: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${stack.google.tokeninfoUrl}?access_token=${encodeURIComponent(token)}`);
  return (await res.json()) as Record<string, unknown>;
}

function form(fields: Record<string, string>, extra = ''): string {
  return new URLSearchParams(fields).toString() + extra;
}

async function sts(body: string, contentType = 'application/x-www-form-urlencoded', method = 'POST') {
  const res = await fetch(stsUrl(), {
    method,
    headers: { 'content-type': contentType },
    ...(method === 'POST' ? { body } : {}),
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    text,
    json: JSON.parse(text) as Record<string, unknown>,
  };
}

describe("Google's own auth libraries, unchanged, from an external_account credential file", () => {
  it('google-auth-library (Node): file source → a token Google accepts, minted once and shared with /token', async () => {
    const file = await credentialFile('node-file', REPORTING, {
      file: tokenFile('billing', billing),
    });
    const before = stack.google.stats.tokensIssued;
    const auth = new GoogleAuth({ keyFilename: file, scopes: [BIGQUERY] });
    const token = await auth.getAccessToken();
    expect(token).toBeTruthy();
    expect(await tokeninfo(token as string)).toMatchObject({ email: REPORTING, scope: BIGQUERY });
    // The same cache entry as the JSON API's: a hit there, and no second mint.
    const json = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: billing },
    );
    expect(json.headers.get('cache-status')).toBe('broker; hit');
    expect(json.json['access_token']).toBe(token);
    expect(stack.google.stats.tokensIssued - before).toBe(1);
    // And the audit line is the token operation's.
    const line = broker.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find(
        (l) =>
          l['message'] === 'token served' &&
          (l['httpRequest'] as Record<string, unknown>)['requestUrl'] === '/sts',
      );
    expect(line?.['audit']).toMatchObject({
      operation: 'token',
      caller: BILLING,
      account: REPORTING,
      cache: 'miss',
    });
  });

  // Storage 8 where it runs (Node 22: npm run test:node22), Storage 7 on Node 20.
  it('@google-cloud/storage from the credential file alone sends the brokered token to the Storage API', async () => {
    const { Storage } = storage8Available() ? await importStorage8() : await import('storage7');
    const arrived: Array<string | undefined> = [];
    const gcs = createServer((req, res) => {
      arrived.push(req.headers.authorization);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ kind: 'storage#object', bucket: 'bkt', name: 'report.csv', size: '5' }));
    });
    await new Promise<void>((r) => gcs.listen(0, '127.0.0.1', r));
    try {
      const file = await credentialFile('storage', REPORTING, { file: tokenFile('billing-gcs', billing) });
      const storage = new Storage({
        keyFilename: file,
        projectId: 'acme',
        apiEndpoint: `http://127.0.0.1:${(gcs.address() as AddressInfo).port}`,
        useAuthWithCustomEndpoint: true,
      });
      const [metadata] = await storage.bucket('bkt').file('report.csv').getMetadata();
      expect(metadata.name).toBe('report.csv');
      expect(arrived).toHaveLength(1);
      const token = /^Bearer (.+)$/.exec(arrived[0] ?? '')?.[1];
      expect(await tokeninfo(token as string)).toMatchObject({
        email: REPORTING,
        scope: [...STORAGE_SCOPES].sort().join(' '),
      });
    } finally {
      gcs.close();
    }
  });

  it('google-auth-library (Node): URL source on GCE or GKE → the library fetches the caller ID token from the metadata server itself', async () => {
    const before = workload.stats.identityRequests;
    const file = await credentialFile('node-url', KEYLESS, { metadata: workload });
    const token = await new GoogleAuth({ keyFilename: file, scopes: [BIGQUERY] }).getAccessToken();
    expect(await tokeninfo(token as string)).toMatchObject({ email: KEYLESS, scope: BIGQUERY });
    expect(workload.stats.identityRequests - before).toBe(1);
  });

  it("google-auth-library (Node) 10.5: the URL source against Cloud Run's metadata server fails safely (use the executable source there)", async () => {
    // Known upstream quirk: gaxios parses a response by its content type, and Cloud Run's metadata server serves ID
    // tokens as `application/text`, which gaxios returns as a Blob; the library then sends "[object Blob]".
    const cloudRun = await stack.google.startMetadataServer({
      email: BILLING,
      identityContentType: 'application/text',
    });
    const before = { identity: cloudRun.stats.identityRequests, iam: stack.google.stats.iamRequests.total };
    const file = await credentialFile('node-url-run', KEYLESS, { metadata: cloudRun });
    await expect(new GoogleAuth({ keyFilename: file, scopes: [BIGQUERY] }).getAccessToken()).rejects.toThrow(
      /invalid_grant/,
    );
    expect(cloudRun.stats.identityRequests - before.identity).toBe(1);
    expect(stack.google.stats.iamRequests.total).toBe(before.iam);
  });

  it('google-auth-library (Node): executable source', async () => {
    const script = join(stack.dir, 'print-token.mjs');
    const expiry = Math.floor(Date.now() / 1000) + 3000;
    writeFileSync(
      script,
      `console.log(JSON.stringify({ version: 1, success: true, token_type: ${JSON.stringify(ID_TOKEN)}, id_token: ${JSON.stringify(billing)}, expiration_time: ${expiry} }));\n`,
    );
    const file = await credentialFile('node-exec', REPORTING, {
      executable: `${process.execPath} ${script}`,
    });
    process.env['GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES'] = '1';
    try {
      const token = await new GoogleAuth({ keyFilename: file, scopes: [BIGQUERY] }).getAccessToken();
      expect(await tokeninfo(token as string)).toMatchObject({ email: REPORTING });
    } finally {
      delete process.env['GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES'];
    }
  });

  describe.runIf(pythonAvailable())('Python google-auth', () => {
    const script = (file: string) => `
import json, google.auth
from google.auth.transport.requests import Request
creds, _ = google.auth.load_credentials_from_file(${JSON.stringify(file)}, scopes=[${JSON.stringify(BIGQUERY)}])
creds.refresh(Request())
print(json.dumps({"type": type(creds).__module__ + "." + type(creds).__name__, "token": creds.token}))
`;

    it('identity_pool.Credentials, file source with a trailing newline → a token Google accepts', async () => {
      const file = await credentialFile('py-file', REPORTING, {
        file: tokenFile('billing-py', billing),
      });
      const out = JSON.parse(await runPython(script(file))) as { type: string; token: string };
      expect(out.type).toBe('google.auth.identity_pool.Credentials');
      expect(await tokeninfo(out.token)).toMatchObject({ email: REPORTING, scope: BIGQUERY });
    });

    it('identity_pool.Credentials, URL source: Python fetches the ID token from the metadata server', async () => {
      const before = workload.stats.identityRequests;
      const file = await credentialFile('py-url', KEYLESS, { metadata: workload });
      const out = JSON.parse(await runPython(script(file))) as { token: string };
      expect(await tokeninfo(out.token)).toMatchObject({ email: KEYLESS });
      expect(workload.stats.identityRequests - before).toBe(1);
    });
  });
});

describe('token exchange answers and errors (RFC 8693, RFC 6749 §5.2)', () => {
  const ok = () => ({
    grant_type: GRANT,
    subject_token: billing,
    subject_token_type: ID_TOKEN,
    audience: `//token-broker/serviceAccounts/${REPORTING}`,
    scope: BIGQUERY,
  });

  it('answers 200 with the RFC 8693 fields, no-store and Cache-Status', async () => {
    const r = await sts(form(ok()));
    expect(r.status).toBe(200);
    expect(Object.keys(r.json).sort()).toEqual([
      'access_token',
      'expires_in',
      'issued_token_type',
      'token_type',
    ]);
    expect(r.json).toMatchObject({
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
    });
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.headers.get('cache-status')).toMatch(/^broker; /);
  });

  it('serves domain-wide delegation and tenants through the audience', async () => {
    const job = await stack.callerToken(SYNC_JOB);
    const dwd = await sts(
      form({
        ...ok(),
        subject_token: job,
        audience: `//token-broker/serviceAccounts/${REPORTING}/subjects/alice@acme.com`,
        scope: CALENDAR,
      }),
    );
    expect(dwd.status).toBe(200);
    expect(await tokeninfo(dwd.json['access_token'] as string)).toMatchObject({ sub: 'alice@acme.com' });
    const platform = await stack.callerToken(PLATFORM);
    const tenant = await sts(
      form({
        ...ok(),
        subject_token: platform,
        audience: '//token-broker/tenants/blue',
        scope: 'https://www.googleapis.com/auth/drive.file',
      }),
    );
    expect(tenant.status).toBe(200);
    expect(await tokeninfo(tenant.json['access_token'] as string)).toMatchObject({ email: BLUE });
  });

  it.each([
    [
      'a missing subject_token',
      () => {
        const f: Record<string, string> = ok();
        delete f['subject_token'];
        return form(f);
      },
      'invalid_request',
    ],
    ['a repeated scope', () => form(ok(), `&scope=${encodeURIComponent(BIGQUERY)}`), 'invalid_request'],
    [
      'a malformed audience',
      () => form({ ...ok(), audience: 'https://broker.example/sa' }),
      'invalid_request',
    ],
    [
      'a scope with a comma',
      () => form({ ...ok(), scope: `${BIGQUERY},https://www.googleapis.com/auth/cloud-platform` }),
      'invalid_request',
    ],
    [
      'another grant type',
      () => form({ ...ok(), grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer' }),
      'unsupported_grant_type',
    ],
    [
      'a forged subject token',
      () => form({ ...ok(), subject_token: `${billing.slice(0, -4)}AAAA` }),
      'invalid_grant',
    ],
    ['garbage as the subject token', () => form({ ...ok(), subject_token: 'not-a-jwt' }), 'invalid_grant'],
  ])('answers 400 for %s', async (_, body, error) => {
    const r = await sts(body());
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.json['error']).toBe(error);
    expect(typeof r.json['error_description']).toBe('string');
    expect(r.text).not.toContain(billing);
  });

  it('never trusts an unsigned subject token, even where the operator allows SIGNATURE_REMOVED_BY_GOOGLE headers', async () => {
    const lenient = await stack.serveBroker('broker', { BROKER_ALLOW_SIGNATURE_REMOVED_BY_GOOGLE: 'true' });
    const [h, c] = (await stack.callerToken(OPS)).split('.');
    const forged = `${h}.${c}.SIGNATURE_REMOVED_BY_GOOGLE`;
    const before = stack.google.stats.tokensIssued;
    const res = await fetch(`${lenient.url}/sts`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form({ ...ok(), subject_token: forged }),
    });
    const json = (await res.json()) as Record<string, unknown>;
    expect([res.status, json['error']]).toEqual([400, 'invalid_grant']);
    expect(json['access_token']).toBeUndefined();
    expect(stack.google.stats.tokensIssued).toBe(before);
    // The same unsigned token in a header, with no X-Serverless-Authorization, is what that setting is for.
    const header = await post(`${lenient.url}/admin/purge`, { all: true }, { token: forged });
    expect(header.status).toBe(200);
  });

  it('gives unknown and forbidden audiences the same 400 invalid_target body', async () => {
    const unknown = await sts(
      form({ ...ok(), audience: '//token-broker/serviceAccounts/nobody@acme.iam.gserviceaccount.com' }),
    );
    const forbidden = await sts(form({ ...ok(), audience: `//token-broker/serviceAccounts/${BLUE}` }));
    const unknownTenant = await sts(form({ ...ok(), audience: '//token-broker/tenants/nobody' }));
    expect([unknown.status, forbidden.status, unknownTenant.status]).toEqual([400, 400, 400]);
    expect(unknown.json['error']).toBe('invalid_target');
    expect(forbidden.text).toBe(unknown.text);
    expect(unknownTenant.text).toBe(unknown.text);
  });

  it('answers wrong methods and content types in JSON, never HTML', async () => {
    const get = await sts('', 'application/x-www-form-urlencoded', 'GET');
    expect([get.status, get.json['error']]).toEqual([405, 'method_not_allowed']);
    for (const type of ['application/json', 'text/plain', 'multipart/form-data; boundary=x']) {
      const r = await sts(type === 'application/json' ? '{"bad json' : form(ok()), type);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      expect(r.status === 415 || r.status === 400).toBe(true);
      expect(r.text).not.toMatch(/<html|<pre/i);
    }
    const big = await sts(form({ ...ok(), scope: `${BIGQUERY} ${'x'.repeat(70_000)}` }));
    expect([big.status, big.json['error']]).toEqual([413, 'request_too_large']);
  });

  it("passes IAM's refusal through as 502 and an unreachable IAM as 503", async () => {
    const refused = await sts(form({ ...ok(), audience: `//token-broker/serviceAccounts/${UNGRANTED}` }));
    expect([refused.status, refused.json['error'], refused.json['upstream_error']]).toEqual([
      502,
      'upstream_rejected',
      'PERMISSION_DENIED',
    ]);
    // A keyless account nothing has cached yet, with IAM failing: retried, then 503 with Retry-After.
    stack.google.injectIamFault({ kind: 'status', status: 503 }, Number.POSITIVE_INFINITY);
    try {
      const down = await sts(form({ ...ok(), audience: `//token-broker/serviceAccounts/${CHAINED}` }));
      expect([down.status, down.json['error']]).toEqual([503, 'upstream_unavailable']);
      expect(Number(down.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(down.json['access_token']).toBeUndefined();
    } finally {
      stack.google.reset();
    }
  });

  it("answers 429 with Retry-After past the caller's rate limit, as the JSON endpoints do", async () => {
    const policy = { ...examplePolicy(), rateLimit: { requests: 2, windowSeconds: 60 } };
    const limited = await stack.serveBroker('sts', {
      BROKER_POLICY: JSON.stringify(policy),
      BROKER_POLICY_FILE: undefined,
    });
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 4; i++) {
      last = await fetch(limited.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form(ok()),
      });
      statuses.push(last.status);
      if (i < 3) await last.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 429, 429]);
    expect(Number(last?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await last?.json()).toMatchObject({ error: 'rate_limited' });
  });
});
