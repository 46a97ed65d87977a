import { createPublicKey, type JsonWebKey, verify } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Compute, Impersonated } from 'google-auth-library';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type GoogleStandIn,
  type KeylessAccount,
  type MetadataServer,
  startGoogleStandIn,
} from '../../infra/google/server.js';
import { pythonAvailable, runPython } from '../support/python.js';

const BROKER = 'token-broker@acme.iam.gserviceaccount.com';
const JOB = 'reports-job@acme.iam.gserviceaccount.com';
const DENIED = 'payroll@acme.iam.gserviceaccount.com';
const HOP1 = 'hop-one@acme.iam.gserviceaccount.com';
const HOP2 = 'hop-two@acme.iam.gserviceaccount.com';
const END = 'chain-end@acme.iam.gserviceaccount.com';
const USER = 'alice@acme.com';
const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const GMAIL = 'https://www.googleapis.com/auth/gmail.readonly';
const AUDIENCE = 'https://reports.acme.example';
const delegate = (email: string) => `projects/-/serviceAccounts/${email}`;

let google: GoogleStandIn;
let metadata: MetadataServer;
let job: KeylessAccount;

beforeAll(async () => {
  google = await startGoogleStandIn({ issuer: 'https://accounts.google.com' });
  metadata = await google.startMetadataServer({ email: BROKER });
  job = google.registerKeylessAccount(JOB);
  google.registerKeylessAccount(DENIED);
  for (const email of [HOP1, HOP2, END]) google.registerKeylessAccount(email);
  google.grantTokenCreator(JOB, `serviceAccount:${BROKER}`);
  google.grantTokenCreator(HOP1, BROKER);
  google.grantTokenCreator(HOP2, HOP1);
  google.grantTokenCreator(END, HOP2);
  google.addUser(USER);
  google.allowDelegation(JOB, [GMAIL]);
  delete process.env['GOOGLE_APPLICATION_CREDENTIALS'];
  process.env['HOME'] = mkdtempSync(join(tmpdir(), 'iam-standin-home-'));
  process.env['GCE_METADATA_HOST'] = metadata.host;
});
afterEach(() => google.reset());
afterAll(async () => google?.close());

const impersonated = (targetPrincipal: string, delegates: string[] = []) =>
  new Impersonated({
    sourceClient: new Compute(),
    targetPrincipal,
    targetScopes: [CLOUD_PLATFORM],
    delegates,
    lifetime: 3600,
    endpoint: google.iamUrl,
  });

const tokeninfo = async (accessToken: string) =>
  (await fetch(`${google.tokeninfoUrl}?access_token=${encodeURIComponent(accessToken)}`)).json() as Promise<
    Record<string, unknown>
  >;

async function metadataToken(server = metadata): Promise<string> {
  const res = await fetch(`${server.url}/computeMetadata/v1/instance/service-accounts/default/token`, {
    headers: { 'Metadata-Flavor': 'Google' },
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

/** A raw IAM call, so the test controls the bearer and the exact body. */
async function iam(account: string, method: string, body: unknown, bearer?: string | null) {
  const token = bearer === undefined ? await metadataToken() : bearer;
  const res = await fetch(`${google.iamUrl}/v1/projects/-/serviceAccounts/${account}:${method}`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return {
    status: res.status,
    headers: res.headers,
    json: (await res.json()) as Record<string, Record<string, unknown>>,
  };
}

describe("IAM Credentials stand-in, driven by google-auth-library's Impersonated client", () => {
  it('mints an access token for the account (source: Compute via the metadata stand-in), described by tokeninfo', async () => {
    const before = { ...google.stats.iamRequests };
    const mdBefore = metadata.stats.tokenRequests;
    const { token } = await impersonated(JOB).getAccessToken();
    const info = await tokeninfo(token!);
    expect(info).toMatchObject({ email: JOB, scope: CLOUD_PLATFORM, aud: job.clientId });
    expect(Number(info['expires_in'])).toBeGreaterThan(3590);
    expect(google.stats.iamRequests.generateAccessToken - before.generateAccessToken).toBe(1);
    expect(metadata.stats.tokenRequests - mdBefore).toBe(1);
  });

  it("signs bytes with the account's own Google-managed key (sign → signBlob)", async () => {
    const { keyId, signedBlob } = await impersonated(JOB).sign('a blob to sign');
    expect(keyId).toBe(job.keyId);
    const jwks = (await (await fetch(google.serviceAccountJwksUrl(JOB))).json()) as {
      keys: Array<{ kid: string }>;
    };
    const jwk = jwks.keys.find((k) => k.kid === keyId)!;
    const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    const signature = Buffer.from(signedBlob, 'base64');
    expect(verify('sha256', Buffer.from('a blob to sign'), key, signature)).toBe(true);
    expect(verify('sha256', Buffer.from('another blob'), key, signature)).toBe(false);
  });

  it('fetches a Google-signed ID token whose email is the account', async () => {
    const idToken = await impersonated(JOB).fetchIdToken(AUDIENCE, { includeEmail: true });
    const { payload } = await jwtVerify(idToken, createRemoteJWKSet(new URL(google.jwksUrl)), {
      issuer: 'https://accounts.google.com',
      audience: AUDIENCE,
    });
    expect(payload).toMatchObject({ email: JOB, email_verified: true, sub: job.clientId, azp: JOB });
    expect(payload.exp! - payload.iat!).toBe(3600);
  });

  it('follows a delegation chain, and refuses it when a link lacks the grant', async () => {
    const chain = [delegate(HOP1), delegate(HOP2)];
    const { token } = await impersonated(END, chain).getAccessToken();
    expect((await tokeninfo(token!))['email']).toBe(END);
    google.revokeTokenCreator(HOP2, HOP1);
    try {
      await expect(impersonated(END, chain).getAccessToken()).rejects.toThrow(/PERMISSION_DENIED/);
      // Skipping a hop is no way around it: the broker holds no grant on HOP2.
      await expect(impersonated(END, [delegate(HOP2)]).getAccessToken()).rejects.toThrow(/PERMISSION_DENIED/);
    } finally {
      google.grantTokenCreator(HOP2, HOP1);
    }
  });

  it("answers an ungranted account with google-auth-library's error carrying 403 PERMISSION_DENIED", async () => {
    const err = await impersonated(DENIED)
      .getAccessToken()
      .catch((e: unknown) => e);
    // A GaxiosError (gaxios is not a direct dependency, so checked by shape).
    expect(err).toBeInstanceOf(Error);
    const g = err as Error & { status?: number; response?: { data?: { error?: { status?: string } } } };
    expect(g.status).toBe(403);
    expect(g.message).toBe(
      "PERMISSION_DENIED: unable to impersonate: Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
    );
    expect(g.response?.data?.error?.status).toBe('PERMISSION_DENIED');
  });
});

describe('IAM Credentials stand-in: signJwt and the token endpoint', () => {
  it("signs claims with the account's key (kid in the header); /token accepts it for domain-wide delegation", async () => {
    const iat = Math.floor(Date.now() / 1000);
    const claims = { iss: JOB, sub: USER, scope: GMAIL, aud: google.tokenUrl, iat, exp: iat + 3600 };
    const r = await iam(JOB, 'signJwt', { payload: JSON.stringify(claims) });
    expect(r.status).toBe(200);
    const { keyId, signedJwt } = r.json as unknown as { keyId: string; signedJwt: string };
    expect(keyId).toBe(job.keyId);
    expect(decodeProtectedHeader(signedJwt)).toEqual({ alg: 'RS256', kid: job.keyId, typ: 'JWT' });
    const jwks = createRemoteJWKSet(new URL(google.serviceAccountJwksUrl(JOB)));
    expect((await jwtVerify(signedJwt, jwks)).payload).toEqual(claims);
    const res = await fetch(google.tokenUrl, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        assertion: signedJwt,
      }),
    });
    const granted = (await res.json()) as { access_token: string; scope: string };
    expect([res.status, granted.scope]).toEqual([200, GMAIL]);
    expect(await tokeninfo(granted.access_token)).toMatchObject({ email: JOB, sub: USER, scope: GMAIL });
  });

  it('adds exp = now + 1 h when the claims have none; takes exp up to 12 h ahead', async () => {
    const t = Math.floor(Date.now() / 1000);
    const r = await iam(JOB, 'signJwt', {
      payload: JSON.stringify({ iss: JOB, sub: JOB, aud: 'https://x/' }),
    });
    const exp = Number(
      JSON.parse(Buffer.from(String(r.json['signedJwt']).split('.')[1]!, 'base64url').toString())['exp'],
    );
    expect(exp - t).toBeGreaterThanOrEqual(3599);
    expect(exp - t).toBeLessThanOrEqual(3601);
    const late = await iam(JOB, 'signJwt', { payload: JSON.stringify({ iss: JOB, exp: t + 11 * 3600 }) });
    expect(late.status).toBe(200);
  });
});

describe('IAM Credentials stand-in: as strict as Google', () => {
  const scope = [CLOUD_PLATFORM];

  it('wants a live bearer from a metadata server: missing, unknown, expired or foreign tokens get 401 UNAUTHENTICATED', async () => {
    const other = await google.startMetadataServer({ email: BROKER });
    const expired = await metadataToken(other);
    other.expireTokens();
    const foreign = (await impersonated(JOB).getAccessToken()).token!;
    for (const bearer of [null, 'ya29.not-a-token', expired, foreign]) {
      const r = await iam(JOB, 'generateAccessToken', { scope }, bearer);
      expect(r.status).toBe(401);
      expect(r.json).toEqual({
        error: {
          code: 401,
          message:
            'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
          status: 'UNAUTHENTICATED',
        },
      });
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer /);
    }
  });

  it('wants the cloud-platform (or iam) scope on the bearer', async () => {
    const narrow = await google.startMetadataServer({
      email: BROKER,
      scopes: ['https://www.googleapis.com/auth/userinfo.email'],
    });
    const r = await iam(JOB, 'generateAccessToken', { scope }, await metadataToken(narrow));
    expect(r.status).toBe(403);
    expect(r.json['error']).toMatchObject({
      message: 'Request had insufficient authentication scopes.',
      status: 'PERMISSION_DENIED',
    });
  });

  it('answers an ungranted (account, member) with 403 in exactly Google’s shape, and mints nothing', async () => {
    const r = await iam(DENIED, 'generateAccessToken', { scope });
    expect(r.status).toBe(403);
    expect(r.json).toEqual({
      error: {
        code: 403,
        message: "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        status: 'PERMISSION_DENIED',
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'IAM_PERMISSION_DENIED',
            domain: 'iam.googleapis.com',
            metadata: { permission: 'iam.serviceAccounts.getAccessToken' },
          },
        ],
      },
    });
    for (const [method, permission, body] of [
      ['signJwt', 'iam.serviceAccounts.signJwt', { payload: '{}' }],
      ['signBlob', 'iam.serviceAccounts.signBlob', { payload: 'AAAA' }],
      ['generateIdToken', 'iam.serviceAccounts.getOpenIdToken', { audience: AUDIENCE }],
    ] as const) {
      const denied = await iam(DENIED, method, body);
      expect([denied.status, denied.json['error']?.['message']]).toEqual([
        403,
        `Permission '${permission}' denied on resource (or it may not exist).`,
      ]);
      expect(Object.keys(denied.json)).toEqual(['error']);
    }
  });

  it('answers an unknown account with 404 NOT_FOUND', async () => {
    const r = await iam('ghost@acme.iam.gserviceaccount.com', 'generateAccessToken', { scope });
    expect(r).toMatchObject({
      status: 404,
      json: {
        error: {
          code: 404,
          status: 'NOT_FOUND',
          message: 'Not found; Gaia id not found for email ghost@acme.iam.gserviceaccount.com',
        },
      },
    });
  });

  it('answers malformed requests with 400 INVALID_ARGUMENT', async () => {
    const t = Math.floor(Date.now() / 1000);
    const cases: Array<[string, string, unknown]> = [
      ['lifetime over an hour', 'generateAccessToken', { scope, lifetime: '3601s' }],
      ['lifetime not a duration', 'generateAccessToken', { scope, lifetime: '1h' }],
      ['lifetime zero', 'generateAccessToken', { scope, lifetime: '0s' }],
      ['no scope', 'generateAccessToken', { lifetime: '60s' }],
      ['scope as a string', 'generateAccessToken', { scope: CLOUD_PLATFORM }],
      ['unknown field', 'generateAccessToken', { scope, subject: USER }],
      ['not JSON', 'generateAccessToken', '{"scope": ['],
      ['a JSON array', 'generateAccessToken', '[]'],
      ['delegate as a bare email', 'generateAccessToken', { scope, delegates: [HOP1] }],
      [
        'delegate with a project',
        'generateAccessToken',
        { scope, delegates: [`projects/acme/serviceAccounts/${HOP1}`] },
      ],
      ['exp 13 h ahead', 'signJwt', { payload: JSON.stringify({ iss: JOB, exp: t + 13 * 3600 }) }],
      ['exp in the past', 'signJwt', { payload: JSON.stringify({ iss: JOB, exp: t - 60 }) }],
      ['exp not a number', 'signJwt', { payload: JSON.stringify({ iss: JOB, exp: 'soon' }) }],
      ['payload not JSON', 'signJwt', { payload: 'iss=me' }],
      ['no audience', 'generateIdToken', { includeEmail: true }],
      ['includeEmail not a boolean', 'generateIdToken', { audience: AUDIENCE, includeEmail: 'yes' }],
    ];
    for (const [name, method, body] of cases) {
      const r = await iam(JOB, method, body);
      expect([name, r.status, r.json['error']?.['status'], r.json['error']?.['code']]).toEqual([
        name,
        400,
        'INVALID_ARGUMENT',
        400,
      ]);
      expect(JSON.stringify(r.json)).not.toMatch(/ya29\.|eyJ/);
    }
    // The bounds themselves pass.
    expect((await iam(JOB, 'generateAccessToken', { scope, lifetime: '3600s' })).status).toBe(200);
    expect((await iam(JOB, 'generateAccessToken', { scope, lifetime: '1.5s' })).status).toBe(200);
    const project = await fetch(
      `${google.iamUrl}/v1/projects/acme/serviceAccounts/${JOB}:generateAccessToken`,
      {
        method: 'POST',
        headers: { Authorization: `Bearer ${await metadataToken()}` },
        body: JSON.stringify({ scope }),
      },
    );
    expect(project.status).toBe(400);
  });

  it('returns expireTime as RFC 3339 in whole seconds, lifetime from the request', async () => {
    const r = await iam(JOB, 'generateAccessToken', { scope, lifetime: '600s' });
    const expireTime = String(r.json['expireTime']);
    expect(expireTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Math.abs(Date.parse(expireTime) - Date.now() - 600_000)).toBeLessThan(5_000);
    const info = await tokeninfo(String(r.json['accessToken']));
    expect(Number(info['expires_in'])).toBeLessThanOrEqual(600);
  });
});

describe('IAM Credentials stand-in: faults and stats', () => {
  const scope = [CLOUD_PLATFORM];

  it('plays status faults in Google’s error shape (Retry-After on 429), then serves again', async () => {
    const before = { ...google.stats.iamRequests };
    const statuses: Array<[number, string]> = [
      [403, 'PERMISSION_DENIED'],
      [404, 'NOT_FOUND'],
      [400, 'INVALID_ARGUMENT'],
      [429, 'RESOURCE_EXHAUSTED'],
      [503, 'UNAVAILABLE'],
    ];
    for (const [status] of statuses) {
      google.injectIamFault({
        kind: 'status',
        status,
        message: `injected ${status}`,
        ...(status === 429 ? { retryAfterSeconds: 7 } : {}),
      });
    }
    for (const [status, name] of statuses) {
      const r = await iam(JOB, 'generateAccessToken', { scope });
      expect(r.status).toBe(status);
      expect(r.json).toEqual({ error: { code: status, message: `injected ${status}`, status: name } });
      expect(r.headers.get('retry-after')).toBe(status === 429 ? '7' : null);
    }
    expect((await iam(JOB, 'generateAccessToken', { scope })).status).toBe(200);
    expect(google.stats.iamRequests.generateAccessToken - before.generateAccessToken).toBe(6);
    expect(google.stats.iamRequests.total - before.total).toBe(6);
  });

  it('hangs, resets, and limits a fault to one method', async () => {
    const bearer = await metadataToken();
    google.injectIamFault({ kind: 'hang' });
    await expect(
      fetch(`${google.iamUrl}/v1/projects/-/serviceAccounts/${JOB}:generateAccessToken`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${bearer}` },
        body: JSON.stringify({ scope }),
        signal: AbortSignal.timeout(300),
      }),
    ).rejects.toMatchObject({ name: 'TimeoutError' });
    google.injectIamFault({ kind: 'reset' });
    await expect(iam(JOB, 'generateAccessToken', { scope }, bearer)).rejects.toThrow();

    const before = { ...google.stats.iamRequests };
    google.injectIamFault({ kind: 'status', status: 503, method: 'signJwt' });
    expect((await iam(JOB, 'generateAccessToken', { scope }, bearer)).status).toBe(200);
    expect((await iam(JOB, 'signJwt', { payload: '{}' }, bearer)).status).toBe(503);
    expect((await iam(JOB, 'signJwt', { payload: '{}' }, bearer)).status).toBe(200);
    expect(google.stats.iamRequests.signJwt - before.signJwt).toBe(2);
    expect(google.stats.iamRequests.generateAccessToken - before.generateAccessToken).toBe(1);
  });
});

describe('IAM Credentials stand-in: fixed latency and addressing', () => {
  it('delays every answer by the set latency, and not after it is cleared', async () => {
    const bearer = await metadataToken();
    const timed = async () => {
      const started = performance.now();
      expect((await iam(JOB, 'generateAccessToken', { scope: [CLOUD_PLATFORM] }, bearer)).status).toBe(200);
      return performance.now() - started;
    };
    google.setIamLatency(300);
    try {
      expect(await timed()).toBeGreaterThanOrEqual(295);
    } finally {
      google.setIamLatency(0);
    }
    expect(await timed()).toBeLessThan(295);
  });

  it('registers keyless accounts cheaply: the RSA key is made on the first signature, with the kid given at registration', async () => {
    const started = performance.now();
    const many = Array.from({ length: 50 }, (_, i) =>
      google.registerKeylessAccount(`tenant-${i}@acme.iam.gserviceaccount.com`),
    );
    // 50 RSA-2048 keys made eagerly take seconds; made lazily, none is made here.
    expect(performance.now() - started).toBeLessThan(1_000);
    const first = many[0]!;
    google.grantTokenCreator(first.email, BROKER);
    const r = await iam(first.email, 'signJwt', { payload: JSON.stringify({ iss: first.email }) });
    expect([r.status, r.json['keyId']]).toEqual([200, first.keyId]);
    const jwks = (await (await fetch(google.serviceAccountJwksUrl(many[1]!.email))).json()) as {
      keys: Array<{ kid: string }>;
    };
    expect(jwks.keys.map((k) => k.kid)).toEqual([many[1]!.keyId]);
  });

  it('takes the account as a percent-encoded email or as its numeric unique ID', async () => {
    for (const id of [encodeURIComponent(JOB), job.clientId]) {
      const r = await iam(id, 'generateAccessToken', { scope: [CLOUD_PLATFORM] });
      expect(r.status).toBe(200);
      expect((await tokeninfo(String(r.json['accessToken'])))['email']).toBe(JOB);
    }
  });
});

describe('IAM Credentials stand-in: lifetimes past an hour (constraints/iam.allowServiceAccountCredentialLifetimeExtension)', () => {
  const LONG = 'long-job@acme.iam.gserviceaccount.com';
  const SIX_HOURS = 21600;
  const longLived = (targetPrincipal: string) =>
    new Impersonated({
      sourceClient: new Compute(),
      targetPrincipal,
      targetScopes: [CLOUD_PLATFORM],
      lifetime: SIX_HOURS,
      endpoint: google.iamUrl,
    });

  beforeAll(() => {
    google.registerKeylessAccount(LONG);
    google.grantTokenCreator(LONG, BROKER);
    google.allowLifetimeExtension(LONG);
  });

  it('gives Impersonated a 6 h token for an account the org policy lists', async () => {
    const client = longLived(LONG);
    const started = Date.now();
    const { token } = await client.getAccessToken();
    // google-auth-library reads expireTime; tokeninfo agrees.
    expect(Math.abs(client.credentials.expiry_date! - (started + SIX_HOURS * 1000))).toBeLessThan(5_000);
    const info = await tokeninfo(token!);
    expect(info['email']).toBe(LONG);
    expect(Number(info['expires_in'])).toBeGreaterThan(SIX_HOURS - 10);
    expect(Number(info['expires_in'])).toBeLessThanOrEqual(SIX_HOURS);
  });

  it("fails Impersonated with Google's 400 for an account the policy does not list, and mints nothing", async () => {
    const before = google.stats.iamRequests.generateAccessToken;
    const err = await longLived(JOB)
      .getAccessToken()
      .catch((e: unknown) => e as Error & { status?: number });
    expect((err as { status?: number }).status).toBe(400);
    expect((err as Error).message).toBe(
      `INVALID_ARGUMENT: unable to impersonate: Access tokens for service account ${JOB} can not have lifetimes of more than 1 hour. Use the Org Policy Constraint constraints/iam.allowServiceAccountCredentialLifetimeExtension to allow up to 12 hours.`,
    );
    expect(google.stats.iamRequests.generateAccessToken - before).toBe(1);
  });

  it('takes 3600s from anyone, 43200s from a listed account, and refuses 0s and more than 12 h', async () => {
    const scope = [CLOUD_PLATFORM];
    expect((await iam(JOB, 'generateAccessToken', { scope, lifetime: '3600s' })).status).toBe(200);
    const longest = await iam(LONG, 'generateAccessToken', { scope, lifetime: '43200s' });
    expect(longest.status).toBe(200);
    expect(Math.abs(Date.parse(String(longest.json['expireTime'])) - Date.now() - 43_200_000)).toBeLessThan(
      5_000,
    );
    const tooLong = await iam(LONG, 'generateAccessToken', { scope, lifetime: '43201s' });
    expect([tooLong.status, tooLong.json['error']?.['status']]).toEqual([400, 'INVALID_ARGUMENT']);
    const zero = await iam(LONG, 'generateAccessToken', { scope, lifetime: '0s' });
    expect(zero.json['error']).toEqual({
      code: 400,
      message: 'Lifetime of access token must be larger then zero.',
      status: 'INVALID_ARGUMENT',
    });
  });
});

describe.skipIf(!pythonAvailable())("IAM Credentials stand-in, driven by Python's google-auth", () => {
  it('impersonated_credentials: an access token, a delegated user token via signJwt, and an ID token', async () => {
    const before = { ...google.stats.iamRequests };
    // google-auth has `iam_endpoint_override` for generateAccessToken only; the
    // signJwt and generateIdToken URLs (and Google's token URL, for the
    // delegated grant) are module templates, patched here to the stand-ins.
    const out = await runPython(
      `
import json, os
import google.auth.exceptions
import google.auth.transport.requests
from google.auth import compute_engine, iam, impersonated_credentials
base = os.environ["IAM_URL"] + "/v1/projects/-/serviceAccounts/{}"
iam._IAM_SIGNJWT_ENDPOINT = base + ":signJwt"
iam._IAM_IDTOKEN_ENDPOINT = base + ":generateIdToken"
impersonated_credentials._GOOGLE_OAUTH2_TOKEN_ENDPOINT = os.environ["TOKEN_URL"]
request = google.auth.transport.requests.Request()
source = compute_engine.Credentials()
target = impersonated_credentials.Credentials(
    source_credentials=source, target_principal=${JSON.stringify(JOB)},
    target_scopes=[${JSON.stringify(CLOUD_PLATFORM)}], lifetime=600,
    iam_endpoint_override=base.format(${JSON.stringify(JOB)}) + ":generateAccessToken")
target.refresh(request)
user = impersonated_credentials.Credentials(
    source_credentials=source, target_principal=${JSON.stringify(JOB)},
    target_scopes=[${JSON.stringify(GMAIL)}], subject=${JSON.stringify(USER)})
user.refresh(request)
idc = impersonated_credentials.IDTokenCredentials(target, target_audience=${JSON.stringify(AUDIENCE)}, include_email=True)
idc.refresh(request)
denied = impersonated_credentials.Credentials(
    source_credentials=source, target_principal=${JSON.stringify(DENIED)},
    target_scopes=[${JSON.stringify(CLOUD_PLATFORM)}],
    iam_endpoint_override=base.format(${JSON.stringify(DENIED)}) + ":generateAccessToken")
try:
    denied.refresh(request)
    refusal = None
except google.auth.exceptions.RefreshError as e:
    refusal = json.loads(e.args[1])["error"]
print(json.dumps({"token": target.token, "user": user.token, "id": idc.token, "refusal": refusal}))
`,
      {
        GCE_METADATA_HOST: metadata.host,
        GCE_METADATA_IP: metadata.host,
        IAM_URL: google.iamUrl,
        TOKEN_URL: google.tokenUrl,
      },
    );
    const r = JSON.parse(out) as { token: string; user: string; id: string; refusal: unknown };
    expect(r.refusal).toMatchObject({ code: 403, status: 'PERMISSION_DENIED' });
    const info = await tokeninfo(r.token);
    expect(info).toMatchObject({ email: JOB, scope: CLOUD_PLATFORM });
    expect(Number(info['expires_in'])).toBeLessThanOrEqual(600);
    expect(await tokeninfo(r.user)).toMatchObject({ email: JOB, sub: USER, scope: GMAIL });
    const { payload } = await jwtVerify(r.id, createRemoteJWKSet(new URL(google.jwksUrl)), {
      audience: AUDIENCE,
    });
    expect(payload['email']).toBe(JOB);
    expect(google.stats.iamRequests.generateAccessToken - before.generateAccessToken).toBe(2);
    expect(google.stats.iamRequests.signJwt - before.signJwt).toBe(1);
    expect(google.stats.iamRequests.generateIdToken - before.generateIdToken).toBe(1);
  });
});
