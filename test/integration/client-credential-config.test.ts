import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ExternalAccountClient,
  GoogleAuth,
  IdentityPoolClient,
  PluggableAuthClient,
} from 'google-auth-library';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type GitHubActionsIssuer,
  type GoogleStandIn,
  type KubernetesIssuer,
  startGoogleStandIn,
} from '../../infra/google/server.js';
import { main } from '../../packages/client/src/cli/broker-token.js';
import { pythonAvailable, runPython } from '../support/python.js';

// `broker-token credential-config` writes an external_account file for each of the three subject-token
// sources. Google's own libraries (google-auth-library for Node, google-auth for Python) must accept
// each file, read the caller's ID token from that source, and POST the RFC 8693 form the broker's `sts`
// endpoint expects. A loopback server stands in for the metadata server's identity endpoint and
// records that form (the `sts` endpoint's own answers are tested with it, elsewhere).

const SA = 'reporting@acme.iam.gserviceaccount.com';
const BROKER_AUDIENCE = 'https://broker.test.example';
const ID_TOKEN = `caller-id-token-${randomBytes(8).toString('hex')}`;

interface Seen {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  form: URLSearchParams;
}

let dir: string;
let server: Server;
let base: string;
let host: string;
const seen: Seen[] = [];
let issued = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cred-config-'));
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      seen.push({
        method: req.method ?? '',
        path: u.pathname,
        headers: req.headers,
        form: new URLSearchParams(body),
      });
      if (u.pathname === '/computeMetadata/v1/instance/service-accounts/default/identity') {
        const ok =
          req.headers['metadata-flavor'] === 'Google' &&
          u.searchParams.get('audience') === BROKER_AUDIENCE &&
          u.searchParams.get('format') === 'full';
        res.writeHead(ok ? 200 : 403, { 'content-type': 'text/plain' });
        res.end(ok ? ID_TOKEN : 'forbidden');
        return;
      }
      if (u.pathname === '/sts' && req.method === 'POST') {
        res.setHeader('content-type', 'application/json');
        res.setHeader('cache-control', 'no-store');
        res.end(
          JSON.stringify({
            access_token: `ya29.from-sts-${++issued}`,
            issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
            token_type: 'Bearer',
            expires_in: 3600,
          }),
        );
        return;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  base = `http://${host}`;
  // The file source, as a real file holds it: with a trailing newline.
  writeFileSync(join(dir, 'id-token'), `${ID_TOKEN}\n`);
  // The executable source: a program that prints Google's executable-source response.
  writeFileSync(
    join(dir, 'print-id-token.mjs'),
    `process.stdout.write(JSON.stringify({ version: 1, success: true,
      token_type: 'urn:ietf:params:oauth:token-type:id_token', id_token: ${JSON.stringify(ID_TOKEN)},
      expiration_time: Math.floor(Date.now() / 1000) + 3600 }));`,
  );
});
afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Source = 'file' | 'metadata' | 'executable';

/** Runs `broker-token credential-config` for a source; returns the file's path and JSON. */
async function write(
  source: Source,
  extra: string[] = [],
): Promise<{ path: string; json: Record<string, unknown> }> {
  const path = join(dir, `${source}.json`);
  const flags =
    source === 'file'
      ? ['--credential-source-file', join(dir, 'id-token')]
      : source === 'metadata'
        ? ['--credential-source-metadata', '--broker-audience', BROKER_AUDIENCE]
        : [
            '--executable-command',
            `${process.execPath} ${join(dir, 'print-id-token.mjs')}`,
            '--executable-timeout-millis',
            '10000',
          ];
  const err: string[] = [];
  const code = await main(
    [
      'credential-config',
      '--url',
      base,
      '--impersonate-service-account',
      SA,
      ...flags,
      '--output-file',
      path,
      ...extra,
    ],
    { GCE_METADATA_HOST: host },
    () => {},
    (s) => err.push(s),
  );
  expect(code, err.join('\n')).toBe(0);
  return { path, json: JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> };
}

/** The token-exchange form the last library call sent. */
function lastExchange(): URLSearchParams {
  const ex = seen.filter((s) => s.path === '/sts');
  expect(ex.length).toBeGreaterThan(0);
  return ex[ex.length - 1]!.form;
}

function expectExchangeForm(
  form: URLSearchParams,
  scope: string,
  audience = `//token-broker/serviceAccounts/${SA}`,
) {
  expect(form.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:token-exchange');
  expect(form.get('subject_token_type')).toBe('urn:ietf:params:oauth:token-type:id_token');
  expect(form.get('subject_token')?.trim()).toBe(ID_TOKEN);
  expect(form.get('audience')).toBe(audience);
  expect(form.get('scope')).toBe(scope);
}

describe('credential-config writes the file Google’s libraries read', () => {
  it('has the external_account shape for each source', async () => {
    const stsUrl = `${base}/sts`;
    const common = {
      type: 'external_account',
      audience: `//token-broker/serviceAccounts/${SA}`,
      subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
      token_url: stsUrl,
    };
    expect((await write('file')).json).toEqual({
      ...common,
      credential_source: { file: join(dir, 'id-token'), format: { type: 'text' } },
    });
    expect((await write('metadata')).json).toEqual({
      ...common,
      credential_source: {
        url: `http://${host}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(BROKER_AUDIENCE)}&format=full`,
        headers: { 'Metadata-Flavor': 'Google' },
        format: { type: 'text' },
      },
    });
    expect((await write('executable')).json).toEqual({
      ...common,
      credential_source: {
        executable: {
          command: `${process.execPath} ${join(dir, 'print-id-token.mjs')}`,
          timeout_millis: 10000,
        },
      },
    });
  });

  it('defaults the metadata host to metadata.google.internal, and takes tenants, subjects and --sts-url', async () => {
    const out: string[] = [];
    const code = await main(
      [
        'credential-config',
        '--sts-url',
        'https://sts-xyz.a.run.app',
        '--tenant',
        'blue',
        '--subject',
        'alice@acme.com',
        '--credential-source-metadata',
        '--broker-audience',
        BROKER_AUDIENCE,
      ],
      {},
      (s) => out.push(s),
      () => {},
    );
    expect(code).toBe(0);
    expect(JSON.parse(out.join(''))).toMatchObject({
      audience: '//token-broker/tenants/blue/subjects/alice@acme.com',
      token_url: 'https://sts-xyz.a.run.app',
      credential_source: {
        url: 'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=https%3A%2F%2Fbroker.test.example&format=full',
      },
    });
    expect(JSON.parse(out.join(''))).not.toHaveProperty('scopes');
  });
});

describe('google-auth-library (Node) accepts each file and exchanges the ID token from its source', () => {
  it('file source: GoogleAuth({ keyFilename }) builds an IdentityPoolClient and sends the RFC 8693 form', async () => {
    const { path, json } = await write('file');
    expect(ExternalAccountClient.fromJSON(json as never)).toBeInstanceOf(IdentityPoolClient);
    const client = await new GoogleAuth({ keyFilename: path }).getClient();
    expect(client).toBeInstanceOf(IdentityPoolClient);
    const { token } = await client.getAccessToken();
    expect(token).toMatch(/^ya29\.from-sts-\d+$/);
    expectExchangeForm(lastExchange(), 'https://www.googleapis.com/auth/cloud-platform');
  });

  it('metadata source: the library fetches the ID token with Metadata-Flavor: Google; the code’s scopes reach the form', async () => {
    const { path } = await write('metadata');
    seen.length = 0;
    const client = await new GoogleAuth({
      keyFilename: path,
      scopes: ['https://www.googleapis.com/auth/bigquery.readonly'],
    }).getClient();
    expect(client).toBeInstanceOf(IdentityPoolClient);
    expect((await client.getAccessToken()).token).toMatch(/^ya29\.from-sts-/);
    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual([
      'GET /computeMetadata/v1/instance/service-accounts/default/identity',
      'POST /sts',
    ]);
    expect(seen[0]?.headers['metadata-flavor']).toBe('Google');
    expectExchangeForm(lastExchange(), 'https://www.googleapis.com/auth/bigquery.readonly');
  });

  it('executable source: a PluggableAuthClient that runs the program (when executables are allowed)', async () => {
    const { path } = await write('executable');
    const client = await new GoogleAuth({ keyFilename: path }).getClient();
    expect(client).toBeInstanceOf(PluggableAuthClient);
    const before = process.env['GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES'];
    process.env['GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES'] = '1';
    try {
      expect((await client.getAccessToken()).token).toMatch(/^ya29\.from-sts-/);
    } finally {
      if (before === undefined) delete process.env['GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES'];
      else process.env['GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES'] = before;
    }
    expectExchangeForm(lastExchange(), 'https://www.googleapis.com/auth/cloud-platform');
  });
});

const python = pythonAvailable();

describe.skipIf(!python)(
  'google-auth (Python) accepts each file and exchanges the ID token from its source',
  () => {
    const script = `
import json, os, sys
import google.auth
from google.auth.transport.requests import Request
creds, project = google.auth.load_credentials_from_file(sys.argv[1] if len(sys.argv) > 1 else os.environ["CRED_FILE"],
    scopes=["https://www.googleapis.com/auth/bigquery.readonly"])
creds.refresh(Request())
print(json.dumps({"module": type(creds).__module__, "class": type(creds).__name__, "token": creds.token, "project": project}))
`;
    const cases: Array<[Source, string]> = [
      ['file', 'google.auth.identity_pool'],
      ['metadata', 'google.auth.identity_pool'],
      ['executable', 'google.auth.pluggable'],
    ];
    it.each(cases)('%s source → %s.Credentials', async (source, module) => {
      const { path } = await write(source);
      seen.length = 0;
      const out = JSON.parse(
        await runPython(script, { CRED_FILE: path, GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES: '1' }),
      ) as Record<string, unknown>;
      expect(out).toMatchObject({
        module,
        class: 'Credentials',
        token: expect.stringMatching(/^ya29\.from-sts-/),
      });
      expectExchangeForm(lastExchange(), 'https://www.googleapis.com/auth/bigquery.readonly');
      if (source === 'metadata') expect(seen[0]?.headers['metadata-flavor']).toBe('Google');
    });
  },
);

// Callers outside Google Cloud: a GitHub Actions job and a Kubernetes pod. The files below are what
// `credential-config --github-actions` and `--kubernetes-token` write; Google's libraries must read the
// subject token from the GitHub-like issuer's ID token URL and from a projected token file, and send it
// as a JWT. (Whether the broker accepts those issuers is its policy's business, tested with it.)
describe('credential files for GitHub Actions and Kubernetes callers', () => {
  const BROKER = 'https://broker.test.example';
  const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
  let google: GoogleStandIn;
  let github: GitHubActionsIssuer;
  let kubernetes: KubernetesIssuer;
  beforeAll(async () => {
    google = await startGoogleStandIn();
    github = await google.startGitHubIssuer();
    kubernetes = await google.startKubernetesIssuer();
  });
  afterAll(async () => google?.close());

  const jobEnv = () => ({
    ACTIONS_ID_TOKEN_REQUEST_URL: github.idTokenRequestUrl,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: github.requestToken,
  });

  async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(
      args,
      env,
      (s) => out.push(s),
      (s) => err.push(s),
    );
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  /** The exchange's subject token, checked against the issuer's published keys. */
  async function verifiedSubject(jwksUrl: string): Promise<Record<string, unknown>> {
    const form = lastExchange();
    expect(form.get('subject_token_type')).toBe(JWT_TYPE);
    expect(form.get('audience')).toBe(`//token-broker/serviceAccounts/${SA}`);
    const { payload } = await jwtVerify(
      form.get('subject_token') ?? '',
      createRemoteJWKSet(new URL(jwksUrl)),
    );
    return payload as Record<string, unknown>;
  }

  it('--github-actions writes the job ID token URL with the broker audience, its request token as bearer, json field "value", type jwt; 0600', async () => {
    const path = join(dir, 'github.json');
    const r = await cli(
      [
        'credential-config',
        '--url',
        base,
        '--impersonate-service-account',
        SA,
        '--github-actions',
        '--broker-audience',
        BROKER,
        '--output-file',
        path,
      ],
      jobEnv(),
    );
    expect(r).toMatchObject({ code: 0, out: '' });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({
      type: 'external_account',
      audience: `//token-broker/serviceAccounts/${SA}`,
      subject_token_type: JWT_TYPE,
      token_url: `${base}/sts`,
      credential_source: {
        url: `${github.idTokenRequestUrl}&audience=${encodeURIComponent(BROKER)}`,
        headers: { Authorization: `bearer ${github.requestToken}` },
        format: { type: 'json', subject_token_field_name: 'value' },
      },
    });
  });

  it("google-auth-library's IdentityPoolClient gets the job's ID token from that URL and sends it as the subject token", async () => {
    const path = join(dir, 'github.json');
    await cli(
      [
        'credential-config',
        '--url',
        base,
        '--impersonate-service-account',
        SA,
        '--github-actions',
        '--broker-audience',
        BROKER,
        '--output-file',
        path,
      ],
      jobEnv(),
    );
    seen.length = 0;
    const before = github.stats.tokensIssued;
    const client = await new GoogleAuth({ keyFilename: path }).getClient();
    expect(client).toBeInstanceOf(IdentityPoolClient);
    expect((await client.getAccessToken()).token).toMatch(/^ya29\.from-sts-/);
    expect(github.stats.tokensIssued).toBe(before + 1);
    const claims = await verifiedSubject(github.jwksUrl);
    expect(claims).toMatchObject({
      iss: github.issuer,
      aud: BROKER,
      sub: 'repo:octo-org/octo-repo:ref:refs/heads/main',
      repository: 'octo-org/octo-repo',
    });
  });

  it('--github-actions outside a job, or to standard output, is a usage error (exit 2) that writes nothing', async () => {
    const base_ = [
      'credential-config',
      '--url',
      base,
      '--impersonate-service-account',
      SA,
      '--github-actions',
    ];
    const outside = await cli([...base_, '--output-file', join(dir, 'never.json')]);
    expect(outside.code).toBe(2);
    expect(outside.err).toContain('$ACTIONS_ID_TOKEN_REQUEST_URL and $ACTIONS_ID_TOKEN_REQUEST_TOKEN');
    const toStdout = await cli(base_, jobEnv());
    expect(toStdout).toMatchObject({ code: 2, out: '' });
    expect(toStdout.err).toContain('give --output-file');
    expect(toStdout.err).not.toContain(github.requestToken);
    expect(existsSync(join(dir, 'never.json'))).toBe(false);
  });

  it('--kubernetes-token writes a file source (text, type jwt); the library reads the projected token, and the refreshed one next time', async () => {
    const tokenPath = join(dir, 'var/run/secrets/tokens/broker');
    const projected = await kubernetes.projectToken(tokenPath, {
      namespace: 'jobs',
      serviceAccount: 'calendar-sync',
      audiences: [BROKER],
    });
    const path = join(dir, 'kubernetes.json');
    const r = await cli([
      'credential-config',
      '--url',
      base,
      '--impersonate-service-account',
      SA,
      '--kubernetes-token',
      tokenPath,
      '--output-file',
      path,
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({
      type: 'external_account',
      audience: `//token-broker/serviceAccounts/${SA}`,
      subject_token_type: JWT_TYPE,
      token_url: `${base}/sts`,
      credential_source: { file: tokenPath, format: { type: 'text' } },
    });
    seen.length = 0;
    const first = await new GoogleAuth({ keyFilename: path }).getClient();
    expect(first).toBeInstanceOf(IdentityPoolClient);
    await first.getAccessToken();
    expect(lastExchange().get('subject_token')).toBe(projected.token);
    expect(await verifiedSubject(kubernetes.jwksUrl)).toMatchObject({
      iss: kubernetes.issuer,
      aud: [BROKER],
      sub: 'system:serviceaccount:jobs:calendar-sync',
    });
    // The kubelet rotates the file; a client reading it afresh sends the new token.
    const rotated = await projected.refresh();
    await (await new GoogleAuth({ keyFilename: path }).getClient()).getAccessToken();
    expect(lastExchange().get('subject_token')).toBe(rotated);
  });

  it("gcloud's own flags make the same GitHub file: --credential-source-url, -headers, -type json, -field-name, --subject-token-type jwt", async () => {
    const url = `${github.idTokenRequestUrl}&audience=${encodeURIComponent(BROKER)}`;
    const r = await cli([
      'credential-config',
      '--url',
      base,
      '--impersonate-service-account',
      SA,
      '--credential-source-url',
      url,
      '--credential-source-headers',
      `Authorization=bearer ${github.requestToken}`,
      '--credential-source-type',
      'json',
      '--credential-source-field-name',
      'value',
      '--subject-token-type',
      'jwt',
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({
      subject_token_type: JWT_TYPE,
      credential_source: {
        url,
        headers: { Authorization: `bearer ${github.requestToken}` },
        format: { type: 'json', subject_token_field_name: 'value' },
      },
    });
    for (const bad of [
      ['--credential-source-type', 'json'],
      ['--credential-source-type', 'yaml'],
      ['--credential-source-field-name', 'value'],
      ['--subject-token-type', 'saml2'],
    ]) {
      const refused = await cli([
        'credential-config',
        '--url',
        base,
        '--impersonate-service-account',
        SA,
        '--credential-source-file',
        '/t',
        ...bad,
      ]);
      expect(refused.code, bad.join(' ')).toBe(2);
    }
  });

  it.skipIf(!python)(
    "Python google-auth reads the job's ID token URL and the projected file the same way",
    async () => {
      const script = `
import json, os
import google.auth
from google.auth.transport.requests import Request
creds, _ = google.auth.load_credentials_from_file(os.environ["CRED_FILE"])
creds.refresh(Request())
print(json.dumps({"module": type(creds).__module__, "token": creds.token}))
`;
      const gh = join(dir, 'github.json');
      await cli(
        [
          'credential-config',
          '--url',
          base,
          '--impersonate-service-account',
          SA,
          '--github-actions',
          '--broker-audience',
          BROKER,
          '--output-file',
          gh,
        ],
        jobEnv(),
      );
      seen.length = 0;
      expect(JSON.parse(await runPython(script, { CRED_FILE: gh }))).toMatchObject({
        module: 'google.auth.identity_pool',
        token: expect.stringMatching(/^ya29\.from-sts-/),
      });
      expect(await verifiedSubject(github.jwksUrl)).toMatchObject({ iss: github.issuer, aud: BROKER });

      const k8s = join(dir, 'kubernetes.json');
      const projected = await kubernetes.projectToken(join(dir, 'py-token'), {
        namespace: 'jobs',
        serviceAccount: 'py',
        audiences: [BROKER],
      });
      await cli([
        'credential-config',
        '--url',
        base,
        '--impersonate-service-account',
        SA,
        '--kubernetes-token',
        projected.path,
        '--output-file',
        k8s,
      ]);
      await runPython(script, { CRED_FILE: k8s });
      expect(lastExchange().get('subject_token')).toBe(projected.token);
      expect(lastExchange().get('subject_token_type')).toBe(JWT_TYPE);
    },
  );
});
