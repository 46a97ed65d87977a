import { mkdtempSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as gcpMetadata from 'gcp-metadata';
import { Compute, GoogleAuth } from 'google-auth-library';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type GoogleStandIn, type MetadataServer, startGoogleStandIn } from '../../infra/google/server.js';
import { pythonAvailable, runPython } from '../support/python.js';

const BROKER = 'token-broker@acme.iam.gserviceaccount.com';
const CALLER = 'billing-job@acme.iam.gserviceaccount.com';
const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const AUDIENCE = 'https://broker.acme.example';
let google: GoogleStandIn;
let broker: MetadataServer;
let caller: MetadataServer;

beforeAll(async () => {
  google = await startGoogleStandIn({ issuer: 'https://accounts.google.com' });
  broker = await google.startMetadataServer({ email: BROKER, projectId: 'acme-broker' });
  caller = await google.startMetadataServer({ email: CALLER, projectId: 'acme-jobs' });
  // Google's libraries must find no other credentials than the metadata server.
  delete process.env['GOOGLE_APPLICATION_CREDENTIALS'];
  process.env['HOME'] = mkdtempSync(join(tmpdir(), 'metadata-standin-home-'));
  // Without it GoogleAuth spawns `gcloud` for a project ID (seconds) before asking the metadata server.
  process.env['GOOGLE_CLOUD_PROJECT'] = 'acme-broker';
  process.env['GCE_METADATA_HOST'] = broker.host;
});
afterEach(async () => {
  google.reset();
  await broker.setDown(false);
  process.env['GCE_METADATA_HOST'] = broker.host;
  gcpMetadata.resetIsAvailableCache();
});
afterAll(async () => google?.close());

const tokeninfo = async (accessToken: string) =>
  (await fetch(`${google.tokeninfoUrl}?access_token=${encodeURIComponent(accessToken)}`)).json() as Promise<
    Record<string, unknown>
  >;

/** A raw GET, so the test controls every header (fetch adds none we would need to remove). */
async function get(server: MetadataServer, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, { headers, redirect: 'manual' });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

describe('metadata server stand-in, driven by gcp-metadata and google-auth-library', () => {
  it('is detected by gcp-metadata and answers its instance and project queries', async () => {
    expect(await gcpMetadata.isAvailable()).toBe(true);
    expect(await gcpMetadata.instance('service-accounts/default/email')).toBe(BROKER);
    expect(await gcpMetadata.project('project-id')).toBe('acme-broker');
    expect(await gcpMetadata.universe('universe-domain')).toBe('googleapis.com');
    expect(
      await gcpMetadata.instance({ property: 'service-accounts/default/', params: { recursive: 'true' } }),
    ).toEqual({ aliases: ['default'], email: BROKER, scopes: [CLOUD_PLATFORM] });
    // isAvailable() probes `instance` without a slash: GCE redirects it to the directory.
    const probe = await get(broker, '/computeMetadata/v1/instance', { 'Metadata-Flavor': 'Google' });
    expect([probe.status, probe.headers.get('location')]).toEqual([301, '/computeMetadata/v1/instance/']);
  });

  it("gives google-auth-library's Compute client an access token that tokeninfo ties to the instance's account", async () => {
    const before = broker.stats.tokenRequests;
    const { token } = await new Compute().getAccessToken();
    expect(token).toMatch(/^ya29\./);
    expect(await tokeninfo(token!)).toMatchObject({ email: BROKER, scope: CLOUD_PLATFORM });
    expect(broker.stats.tokenRequests - before).toBe(1);
    // ?scopes= narrows the token's scopes.
    const scoped = await new Compute({
      scopes: ['https://www.googleapis.com/auth/userinfo.email', 'openid'],
    }).getAccessToken();
    expect((await tokeninfo(scoped.token!))['scope']).toBe(
      'https://www.googleapis.com/auth/userinfo.email openid',
    );
  });

  it('gives GoogleAuth.getIdTokenClient on "GCE" an ID token that the JWKS verifies, with every claim', async () => {
    const before = broker.stats.identityRequests;
    const client = await new GoogleAuth().getIdTokenClient(AUDIENCE);
    const authorization = (await client.getRequestHeaders()).get('authorization') ?? '';
    const idToken = authorization.replace(/^Bearer /, '');
    const { payload, protectedHeader } = await jwtVerify(
      idToken,
      createRemoteJWKSet(new URL(google.jwksUrl)),
      {
        issuer: 'https://accounts.google.com',
        audience: AUDIENCE,
      },
    );
    expect(protectedHeader.alg).toBe('RS256');
    expect(payload).toMatchObject({ email: BROKER, email_verified: true });
    expect(payload.sub).toMatch(/^\d{15,}$/);
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(60);
    expect(broker.stats.identityRequests - before).toBe(1);
    // format=standard leaves the email out, as Google does.
    const standard = await get(
      broker,
      `/computeMetadata/v1/instance/service-accounts/default/identity?audience=x`,
      {
        'Metadata-Flavor': 'Google',
      },
    );
    const claims = (await jwtVerify(standard.body, createRemoteJWKSet(new URL(google.jwksUrl)))).payload;
    expect([claims.aud, claims['email']]).toEqual(['x', undefined]);
  });

  it('serves each identity from its own server: a broker and a caller workload side by side', async () => {
    process.env['GCE_METADATA_HOST'] = caller.host;
    expect(await gcpMetadata.instance('service-accounts/default/email')).toBe(CALLER);
    const { token } = await new Compute().getAccessToken();
    expect((await tokeninfo(token!))['email']).toBe(CALLER);
    const idToken = await new Compute().fetchIdToken(AUDIENCE);
    expect((await jwtVerify(idToken, createRemoteJWKSet(new URL(google.jwksUrl)))).payload['email']).toBe(
      CALLER,
    );
  });

  it('hands out the same token until it nears expiry, like GCE, and a fresh one after expireTokens()', async () => {
    const path = '/computeMetadata/v1/instance/service-accounts/default/token';
    const h = { 'Metadata-Flavor': 'Google' };
    const first = JSON.parse((await get(broker, path, h)).body) as Record<string, unknown>;
    const again = JSON.parse((await get(broker, path, h)).body) as Record<string, unknown>;
    expect(Object.keys(first).sort()).toEqual(['access_token', 'expires_in', 'token_type']);
    expect(first['token_type']).toBe('Bearer');
    expect(again['access_token']).toBe(first['access_token']);
    broker.expireTokens();
    expect((await tokeninfo(String(first['access_token'])))['error']).toBe('invalid_token');
    const fresh = JSON.parse((await get(broker, path, h)).body) as Record<string, unknown>;
    expect(fresh['access_token']).not.toBe(first['access_token']);
    expect(fresh['expires_in']).toBe(3599);
  });
});

describe('metadata server stand-in: as strict as Google', () => {
  const tokenPath = '/computeMetadata/v1/instance/service-accounts/default/token';

  it('refuses a request without Metadata-Flavor: Google, or with X-Forwarded-For, with 403 and no token', async () => {
    const before = { ...broker.stats };
    for (const headers of [
      {},
      { 'Metadata-Flavor': 'google-ish' },
      { 'Metadata-Flavor': 'Google', 'X-Forwarded-For': '203.0.113.9' },
    ]) {
      const r = await get(broker, tokenPath, headers);
      expect(r.status).toBe(403);
      expect(r.headers.get('metadata-flavor')).toBe('Google');
      expect(r.body).not.toMatch(/ya29\./);
    }
    expect((await get(broker, tokenPath)).body).toContain(
      'Missing required header "Metadata-Flavor": "Google"',
    );
    expect(broker.stats.rejected - before.rejected).toBe(4);
    expect(broker.stats.tokensIssued).toBe(before.tokensIssued);
  });

  it("answers with GCE's content types, which Google's clients parse by", async () => {
    const h = { 'Metadata-Flavor': 'Google' };
    const base = '/computeMetadata/v1/instance/service-accounts/default';
    const types = [];
    for (const path of [
      `${base}/token`,
      `${base}/email`,
      `${base}/identity?audience=x`,
      `${base}/?recursive=true`,
    ])
      types.push((await get(broker, path, h)).headers.get('content-type'));
    expect(types).toEqual([
      'application/json',
      'application/text',
      'text/html; charset=utf-8',
      'application/json',
    ]);
  });

  it('asks for an audience on the identity path and 404s what does not exist', async () => {
    const h = { 'Metadata-Flavor': 'Google' };
    const noAudience = await get(broker, '/computeMetadata/v1/instance/service-accounts/default/identity', h);
    expect([noAudience.status, noAudience.body]).toEqual([400, 'non-empty audience parameter required']);
    expect(
      (await get(broker, '/computeMetadata/v1/instance/service-accounts/nobody@x/email', h)).status,
    ).toBe(404);
    expect((await get(broker, '/computeMetadata/v1/instance/attributes/cluster-name', h)).status).toBe(404);
  });

  it('plays a 500 to the Compute client, which retries, and then succeeds', async () => {
    const before = broker.stats.tokenRequests;
    broker.injectFault({ kind: 'status', status: 500, only: 'token' }, 2);
    broker.expireTokens();
    const { token } = await new Compute().getAccessToken();
    expect((await tokeninfo(token!))['email']).toBe(BROKER);
    // gaxios retries 5xx: two 500s, then the token.
    expect(broker.stats.tokenRequests - before).toBe(3);
  });

  it('fails the Compute client when every token request answers 500', async () => {
    broker.injectFault({ kind: 'status', status: 500, only: 'token' }, Number.POSITIVE_INFINITY);
    await expect(new Compute().getAccessToken()).rejects.toMatchObject({ status: 500 });
  });

  it('hangs, resets and goes down (connection refused) on demand, and comes back on the same host', async () => {
    const h = { 'Metadata-Flavor': 'Google' };
    broker.injectFault({ kind: 'hang' });
    const hung = fetch(`${broker.url}${tokenPath}`, { headers: h, signal: AbortSignal.timeout(300) });
    await expect(hung).rejects.toMatchObject({ name: 'TimeoutError' });

    broker.injectFault({ kind: 'reset' });
    await expect(fetch(`${broker.url}${tokenPath}`, { headers: h })).rejects.toThrow();

    await broker.setDown(true);
    const refused = await new Promise<string>((resolve) => {
      // A fresh connection (agent: false): a pooled keep-alive one would see a reset instead.
      request(`${broker.url}${tokenPath}`, { headers: h, agent: false }, () => resolve('answered'))
        .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
        .end();
    });
    expect(refused).toBe('ECONNREFUSED');
    expect(await gcpMetadata.isAvailable()).toBe(false);
    await broker.setDown(false);
    gcpMetadata.resetIsAvailableCache();
    expect(await gcpMetadata.isAvailable()).toBe(true);
    expect((await get(broker, tokenPath, h)).status).toBe(200);
  });
});

/**
 * A recording RFC 8693 token endpoint (a test fixture, not the broker): it
 * keeps each form it receives and answers a fixed token exchange.
 */
async function startRecordingSts() {
  const forms: URLSearchParams[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      forms.push(new URLSearchParams(body));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          access_token: 'exchanged-access-token',
          issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
          token_type: 'Bearer',
          expires_in: 3600,
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    forms,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/sts`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An external_account credential whose subject token is the caller workload's identity from its metadata server. */
const urlSourcedCredential = (stsUrl: string) => ({
  type: 'external_account',
  audience: '//token-broker/serviceAccounts/reports@acme.iam.gserviceaccount.com',
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  token_url: stsUrl,
  credential_source: {
    url: `${caller.url}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(AUDIENCE)}&format=full`,
    headers: { 'Metadata-Flavor': 'Google' },
    format: { type: 'text' },
  },
});

async function expectCallerIdToken(subjectToken: string | null) {
  const { payload } = await jwtVerify(subjectToken ?? '', createRemoteJWKSet(new URL(google.jwksUrl)), {
    issuer: 'https://accounts.google.com',
    audience: AUDIENCE,
  });
  expect(payload).toMatchObject({ email: CALLER, email_verified: true });
}

describe('metadata server stand-in as the URL source of an external_account credential', () => {
  it("google-auth-library's GoogleAuth fetches the caller's ID token from it and sends it as the subject token", async () => {
    const sts = await startRecordingSts();
    try {
      const before = caller.stats.identityRequests;
      const auth = new GoogleAuth({
        credentials: urlSourcedCredential(sts.url),
        scopes: [CLOUD_PLATFORM],
      });
      expect(await auth.getAccessToken()).toBe('exchanged-access-token');
      expect(caller.stats.identityRequests - before).toBe(1);
      expect(sts.forms).toHaveLength(1);
      expect(sts.forms[0]!.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:token-exchange');
      await expectCallerIdToken(sts.forms[0]!.get('subject_token'));
    } finally {
      await sts.close();
    }
  });

  it.skipIf(!pythonAvailable())("Python's identity_pool.Credentials does the same", async () => {
    const sts = await startRecordingSts();
    try {
      const out = await runPython(
        `
import json, os
import google.auth.transport.requests
from google.auth import identity_pool
creds = identity_pool.Credentials.from_info(json.loads(os.environ["CREDENTIAL"]))
creds = creds.with_scopes([${JSON.stringify(CLOUD_PLATFORM)}])
creds.refresh(google.auth.transport.requests.Request())
print(creds.token)
`,
        { CREDENTIAL: JSON.stringify(urlSourcedCredential(sts.url)) },
      );
      expect(out.trim()).toBe('exchanged-access-token');
      expect(sts.forms).toHaveLength(1);
      await expectCallerIdToken(sts.forms[0]!.get('subject_token'));
    } finally {
      await sts.close();
    }
  });
});

describe.skipIf(!pythonAvailable())("metadata server stand-in, driven by Python's google-auth", () => {
  it('compute_engine.Credentials refreshes to a token tokeninfo accepts; IDTokenCredentials gets an ID token from the identity endpoint', async () => {
    const before = { ...broker.stats };
    const out = await runPython(
      `
import json
import google.auth.transport.requests
from google.auth import compute_engine
request = google.auth.transport.requests.Request()
creds = compute_engine.Credentials()
creds.refresh(request)
idc = compute_engine.IDTokenCredentials(request, ${JSON.stringify(AUDIENCE)}, use_metadata_identity_endpoint=True)
idc.refresh(request)
print(json.dumps({"token": creds.token, "email": creds.service_account_email, "id_token": idc.token}))
`,
      { GCE_METADATA_HOST: broker.host, GCE_METADATA_IP: broker.host },
    );
    const r = JSON.parse(out) as { token: string; email: string; id_token: string };
    expect(r.email).toBe(BROKER);
    expect(await tokeninfo(r.token)).toMatchObject({ email: BROKER, scope: CLOUD_PLATFORM });
    const { payload } = await jwtVerify(r.id_token, createRemoteJWKSet(new URL(google.jwksUrl)), {
      issuer: 'https://accounts.google.com',
      audience: AUDIENCE,
    });
    expect(payload['email']).toBe(BROKER);
    expect(broker.stats.tokenRequests - before.tokenRequests).toBeGreaterThanOrEqual(1);
    expect(broker.stats.identityRequests - before.identityRequests).toBe(1);
    expect(broker.stats.rejected).toBe(before.rejected);
  });
});
