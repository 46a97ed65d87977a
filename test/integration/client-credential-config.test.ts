import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
