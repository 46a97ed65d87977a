import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Compute, type CredentialAccessBoundary, DownscopedClient } from 'google-auth-library';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type AccessBoundary,
  type GoogleStandIn,
  type MetadataServer,
  startGoogleStandIn,
} from '../../infra/google/server.js';
import { pythonAvailable, runPython } from '../support/python.js';
import { importStorage8, storage8Available } from '../support/storage8.js';

const BROKER = 'token-broker@acme.iam.gserviceaccount.com';
const READER = 'reader@acme.iam.gserviceaccount.com';
const BUCKET = 'acme-reports';
const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const REAL_STS = 'https://sts.googleapis.com/v1/token';
const BLUE = 'blue/q1.csv';
const GREEN = 'green/q1.csv';
const object = (name: string) => `projects/_/buckets/${BUCKET}/objects/${name}`;

/** objectViewer on the bucket, for names under blue/ only, and listing with a blue/ prefix. */
const BLUE_READER: AccessBoundary = {
  accessBoundaryRules: [
    {
      availableResource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
      availablePermissions: ['inRole:roles/storage.objectViewer'],
      availabilityCondition: {
        title: 'blue objects',
        expression: `resource.name.startsWith('${object('blue/')}') || api.getAttribute('storage.googleapis.com/objectListPrefix', '').startsWith('blue/')`,
      },
    },
  ],
};
/** objectAdmin under blue/ (read, list, create, delete). */
const BLUE_ADMIN: AccessBoundary = {
  accessBoundaryRules: [
    {
      availableResource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
      availablePermissions: ['inRole:roles/storage.objectAdmin'],
      availabilityCondition: { expression: `resource.name.startsWith("${object('blue/')}")` },
    },
  ],
};

let google: GoogleStandIn;
let metadata: MetadataServer;

beforeAll(async () => {
  google = await startGoogleStandIn({ issuer: 'https://accounts.google.com' });
  metadata = await google.startMetadataServer({ email: BROKER, projectId: 'acme' });
  google.storage.putObject(BUCKET, BLUE, 'region,total\nblue,42\n', 'text/csv');
  google.storage.putObject(BUCKET, GREEN, 'region,total\ngreen,7\n', 'text/csv');
  google.storage.putObject(BUCKET, 'blue/q2.csv', 'region,total\nblue,43\n', 'text/csv');
  google.storage.grantBucket(BUCKET, `serviceAccount:${BROKER}`, 'roles/storage.objectAdmin');
  delete process.env['GOOGLE_APPLICATION_CREDENTIALS'];
  process.env['HOME'] = mkdtempSync(join(tmpdir(), 'sts-standin-home-'));
  process.env['GOOGLE_CLOUD_PROJECT'] = 'acme';
  process.env['GCE_METADATA_HOST'] = metadata.host;
});
afterEach(() => google.reset());
afterAll(async () => google?.close());

/**
 * A DownscopedClient (google-auth-library 10) whose source is the Compute
 * client, i.e. the metadata stand-in's token. The library has no option for
 * the STS endpoint (it always posts to https://sts.{universeDomain}/v1/token),
 * so a request interceptor on its STS transport swaps that origin for the
 * stand-in's, like a DNS override: the form, headers and parsing stay the
 * library's, and `aimedAt` records the URL it meant.
 */
function downscoped(boundary: AccessBoundary, source = new Compute()) {
  const client = new DownscopedClient({
    authClient: source,
    credentialAccessBoundary: { accessBoundary: boundary } as CredentialAccessBoundary,
  });
  const aimedAt: string[] = [];
  // `stsCredential` and its `transporter` are not public: the only way in.
  const sts = (
    client as unknown as {
      stsCredential: {
        transporter: {
          interceptors: { request: Set<{ resolved: (c: { url: URL | string }) => { url: URL | string } }> };
        };
      };
    }
  ).stsCredential;
  sts.transporter.interceptors.request.add({
    resolved: (config) => {
      const target = new URL(config.url);
      aimedAt.push(target.href);
      if (target.origin === 'https://sts.googleapis.com')
        config.url = new URL(target.pathname, google.sts.url);
      return config;
    },
  });
  return { client, source, aimedAt };
}

const tokeninfo = async (accessToken: string) =>
  (await fetch(`${google.tokeninfoUrl}?access_token=${encodeURIComponent(accessToken)}`)).json() as Promise<
    Record<string, unknown>
  >;

/** A raw STS call, so the test controls every parameter. */
async function exchange(params: Record<string, string>) {
  const res = await fetch(google.sts.tokenUrl, { method: 'POST', body: new URLSearchParams(params) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}
const cabParams = (subjectToken: string, boundary: unknown = BLUE_READER): Record<string, string> => ({
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
  subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  subject_token: subjectToken,
  options: JSON.stringify({ accessBoundary: boundary }),
});

async function metadataToken(server = metadata): Promise<string> {
  const res = await fetch(`${server.url}/computeMetadata/v1/instance/service-accounts/default/token`, {
    headers: { 'Metadata-Flavor': 'Google' },
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

/** Storage 7 as a token consumer: its own google-auth-library (9) OAuth2Client, refreshed from the broker side's DownscopedClient, as Google's broker/consumer sample does. */
async function storage7(getToken: () => Promise<{ token: string; expiry: number }>) {
  const requireFromStorage7 = createRequire(createRequire(import.meta.url).resolve('storage7'));
  const gal9 = requireFromStorage7('google-auth-library') as {
    OAuth2Client: new () => { refreshHandler?: () => Promise<{ access_token: string; expiry_date: number }> };
  };
  const consumer = new gal9.OAuth2Client();
  consumer.refreshHandler = async () => {
    const t = await getToken();
    return { access_token: t.token, expiry_date: t.expiry };
  };
  const { Storage } = await import('storage7');
  return new Storage({
    projectId: 'acme',
    apiEndpoint: google.storage.url,
    useAuthWithCustomEndpoint: true,
    retryOptions: { autoRetry: false },
    authClient: consumer as never,
  });
}

async function storage8(authClient: DownscopedClient) {
  const { Storage } = await importStorage8();
  return new Storage({
    projectId: 'acme',
    apiEndpoint: google.storage.url,
    useAuthWithCustomEndpoint: true,
    retryOptions: { autoRetry: false },
    authClient: authClient as never,
  });
}

describe("STS stand-in, driven by google-auth-library's DownscopedClient", () => {
  it('exchanges the Compute source token for a downscoped one that expires with it, and records the exchange', async () => {
    const { client, source, aimedAt } = downscoped(BLUE_READER);
    const before = { ...google.sts.stats };
    const { token } = await client.getAccessToken();
    const sourceToken = (await source.getAccessToken()).token!;
    expect(aimedAt).toEqual([REAL_STS]);
    expect(token).toMatch(/^ya29\.d\./);
    expect(token).not.toBe(sourceToken);
    expect(google.sts.stats.exchanges - before.exchanges).toBe(1);
    expect(google.sts.stats.withAuthorizationHeader - before.withAuthorizationHeader).toBe(0);
    expect(google.sts.exchangesForSource(sourceToken)).toBe(1);
    expect(google.sts.exchangesForBoundary(BLUE_READER)).toBeGreaterThanOrEqual(1);
    const issued = google.sts.issued.at(-1)!;
    expect(issued).toMatchObject({ token, email: BROKER, sourceToken, boundary: BLUE_READER });
    // Same expiry as the source (STS's expires_in is the source's remaining life).
    expect(Math.abs(client.credentials.expiry_date! - source.credentials.expiry_date!)).toBeLessThan(2_000);
    expect(Math.abs(issued.exp * 1000 - source.credentials.expiry_date!)).toBeLessThan(2_000);
    expect(await tokeninfo(token!)).toMatchObject({ email: BROKER, scope: CLOUD_PLATFORM });
  });

  it("turns STS's OAuth errors into google-auth-library errors (unknown role, bad CEL), and issues nothing", async () => {
    const issuedBefore = google.sts.issued.length;
    const unknownRole = downscoped({
      accessBoundaryRules: [
        {
          availableResource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
          availablePermissions: ['inRole:roles/storage.objectWizard'],
        },
      ],
    });
    const err = await unknownRole.client.getAccessToken().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^Error code invalid_request: .*roles\/storage\.objectWizard/);
    const badCel = downscoped({
      accessBoundaryRules: [
        {
          availableResource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
          availablePermissions: ['inRole:roles/storage.objectViewer'],
          availabilityCondition: { expression: "resource.name.matches('blue/.*')" },
        },
      ],
    });
    await expect(badCel.client.getAccessToken()).rejects.toThrow(
      /invalid_request: .*unsupported function 'matches'/,
    );
    expect(google.sts.issued.length).toBe(issuedBefore);
  });

  it('fails with invalid_grant once the source token is revoked, and with the same token before it was, succeeds', async () => {
    const source = new Compute();
    const first = downscoped(BLUE_READER, source);
    await first.client.getAccessToken();
    const sourceToken = (await source.getAccessToken()).token!;
    const exchanged = google.sts.exchangesForSource(sourceToken);
    google.revokeAccessToken(sourceToken);
    // A fresh DownscopedClient on the same (cached, now revoked) source token.
    const again = downscoped(BLUE_READER, source);
    await expect(again.client.getAccessToken()).rejects.toThrow(/^Error code invalid_grant: /);
    expect(google.sts.exchangesForSource(sourceToken)).toBe(exchanged);
    // The token issued before the revocation was not derived anew, and still reads.
    const earlier = (await first.client.getAccessToken()).token!;
    const res = await fetch(
      `${google.storage.url}/storage/v1/b/${BUCKET}/o/${encodeURIComponent(BLUE)}?alt=media`,
      {
        headers: { Authorization: `Bearer ${earlier}` },
      },
    );
    expect(res.status).toBe(200);
    // The metadata server hands out a fresh token in place of the revoked one.
    expect((await new Compute().getAccessToken()).token).not.toBe(sourceToken);
  });

  it('retries a 503 from STS (the library retries POSTs) and gets the token on the third request', async () => {
    const { client } = downscoped(BLUE_READER);
    const before = google.sts.stats.requests;
    google.sts.injectFault({ kind: 'status', status: 503 }, 2);
    expect((await client.getAccessToken()).token).toMatch(/^ya29\.d\./);
    expect(google.sts.stats.requests - before).toBe(3);
  });
});

describe('Storage stand-in with downscoped tokens, driven by @google-cloud/storage', () => {
  it('Storage 7 (a consumer given the token) reads blue/, gets 403 on green/, and only the downscoped token reaches Storage', async () => {
    const { client, source } = downscoped(BLUE_READER);
    const storage = await storage7(async () => {
      const t = await client.getAccessToken();
      return { token: t.token!, expiry: t.expirationTime! };
    });
    const bucket = storage.bucket(BUCKET);
    const [bytes] = await bucket.file(BLUE).download();
    expect(bytes.toString()).toBe('region,total\nblue,42\n');
    const denied = await bucket
      .file(GREEN)
      .download()
      .catch((e: unknown) => e as { code?: number; message: string });
    expect(denied).toMatchObject({ code: 403 });
    expect((denied as Error).message).toContain(
      `${BROKER} does not have storage.objects.get access to the Google Cloud Storage object.`,
    );
    // Listing: allowed for the blue/ prefix only (the condition's objectListPrefix half).
    const [files] = await bucket.getFiles({ prefix: 'blue/' });
    expect(files.map((f) => f.name)).toEqual(['blue/q1.csv', 'blue/q2.csv']);
    await expect(bucket.getFiles({ prefix: 'green/' })).rejects.toMatchObject({ code: 403 });
    await expect(bucket.getFiles()).rejects.toMatchObject({ code: 403 });
    // objectViewer has no create, whatever the source account may do.
    await expect(
      bucket.file('blue/new.csv').save('x', { resumable: false, validation: false }),
    ).rejects.toMatchObject({ code: 403 });
    expect(google.storage.getObject(BUCKET, 'blue/new.csv')).toBeUndefined();

    const downscopedToken = (await client.getAccessToken()).token!;
    const seen = google.storage.requestsWithToken(downscopedToken);
    expect(seen.map((r) => [r.operation, r.object ?? r.prefix ?? '', r.status])).toEqual([
      ['download', BLUE, 200],
      ['download', GREEN, 403],
      ['list', 'blue/', 200],
      ['list', 'green/', 403],
      ['list', '', 403],
      ['upload', 'blue/new.csv', 403],
    ]);
    expect(seen.every((r) => r.downscoped && r.email === BROKER)).toBe(true);
    expect(google.storage.requestsWithToken((await source.getAccessToken()).token!)).toEqual([]);
  });

  it.runIf(storage8Available())(
    'Storage 8 (the DownscopedClient as its authClient) uploads under blue/ with objectAdmin, not under green/',
    async () => {
      const { client } = downscoped(BLUE_ADMIN);
      const storage = await storage8(client);
      const bucket = storage.bucket(BUCKET);
      await bucket.file('blue/upload.csv').save('blue,99\n', { resumable: false, contentType: 'text/csv' });
      const stored = google.storage.getObject(BUCKET, 'blue/upload.csv')!;
      expect([stored.data.toString(), stored.contentType]).toEqual(['blue,99\n', 'text/csv']);
      const [metadata] = await bucket.file('blue/upload.csv').getMetadata();
      expect(metadata).toMatchObject({ name: 'blue/upload.csv', size: '8', contentType: 'text/csv' });
      await expect(
        bucket.file('green/upload.csv').save('green,99\n', { resumable: false }),
      ).rejects.toMatchObject({ code: 403 });
      expect(google.storage.getObject(BUCKET, 'green/upload.csv')).toBeUndefined();
      // No list half in this boundary's condition: listing the blue/ prefix is refused.
      await expect(bucket.getFiles({ prefix: 'blue/' })).rejects.toMatchObject({ code: 403 });
      const token = (await client.getAccessToken()).token!;
      expect(google.storage.requestsWithToken(token).map((r) => [r.method, r.operation, r.status])).toEqual([
        ['POST', 'upload', 200],
        ['GET', 'get', 200],
        ['POST', 'upload', 403],
        ['GET', 'list', 403],
      ]);
    },
  );

  it("bounds a downscoped token by the source account's own IAM: a boundary adds nothing the account lacks", async () => {
    const reader = await google.startMetadataServer({ email: READER, projectId: 'acme' });
    google.storage.grantBucket(BUCKET, READER, 'roles/storage.objectViewer');
    const readerToken = await metadataToken(reader);
    const r = await exchange(cabParams(readerToken, BLUE_ADMIN));
    expect(r.status).toBe(200);
    const token = String(r.json['access_token']);
    const put = await fetch(
      `${google.storage.url}/upload/storage/v1/b/${BUCKET}/o?uploadType=media&name=blue%2Fsneaky.csv`,
      {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/csv' },
        body: 'x',
      },
    );
    expect(put.status).toBe(403);
    expect(((await put.json()) as { error: { message: string } }).error.message).toBe(
      `${READER} does not have storage.objects.create access to the Google Cloud Storage object. Permission 'storage.objects.create' denied on resource (or it may not exist).`,
    );
    const get = await fetch(
      `${google.storage.url}/storage/v1/b/${BUCKET}/o/${encodeURIComponent(BLUE)}?alt=media`,
      {
        headers: { Authorization: `Bearer ${token}` },
      },
    );
    expect([get.status, await get.text()]).toEqual([200, 'region,total\nblue,42\n']);
  });
});

describe('STS stand-in: as strict as Google', () => {
  const rule = (extra: Record<string, unknown> = {}) => ({
    availableResource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
    availablePermissions: ['inRole:roles/storage.objectViewer'],
    ...extra,
  });

  it('answers an unknown, expired or revoked subject token, or a downscoped one, with invalid_grant', async () => {
    const other = await google.startMetadataServer({ email: BROKER });
    const expired = await metadataToken(other);
    other.expireTokens();
    const revoked = await metadataToken(await google.startMetadataServer({ email: BROKER }));
    google.revokeAccessToken(revoked);
    const live = await metadataToken();
    const downscopedToken = String((await exchange(cabParams(live))).json['access_token']);
    const issued = google.sts.issued.length;
    for (const subject of ['ya29.not-issued-here', expired, revoked, downscopedToken]) {
      const r = await exchange(cabParams(subject));
      expect([r.status, r.json['error']]).toEqual([400, 'invalid_grant']);
      expect(Object.keys(r.json).sort()).toEqual(['error', 'error_description']);
    }
    expect(google.sts.issued.length).toBe(issued);
    expect(google.sts.exchangesForSource(revoked)).toBe(0);
    // A revoked token is dead everywhere: tokeninfo and Storage refuse it too.
    expect((await tokeninfo(revoked))['error']).toBe('invalid_token');
  });

  it('answers malformed requests and boundaries with 400 invalid_request (or unsupported_grant_type)', async () => {
    const live = await metadataToken();
    const base = cabParams(live);
    const cases: Array<[string, Record<string, string>, string]> = [
      ['grant type', { ...base, grant_type: 'client_credentials' }, 'unsupported_grant_type'],
      ['no grant type', { ...base, grant_type: '' }, 'invalid_request'],
      [
        'requested type',
        { ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:id_token' },
        'invalid_request',
      ],
      [
        'a JWT subject',
        { ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' },
        'invalid_request',
      ],
      ['no subject', { ...base, subject_token: '' }, 'invalid_request'],
      ['options not JSON', { ...base, options: '{"accessBoundary":' }, 'invalid_request'],
      [
        'unknown option',
        { ...base, options: JSON.stringify({ accessBoundary: BLUE_READER, x: 1 }) },
        'invalid_request',
      ],
      ['no boundary', { ...base, options: JSON.stringify({ userProject: 'acme' }) }, 'invalid_request'],
    ];
    const boundaries: Array<[string, unknown]> = [
      ['no rules', { accessBoundaryRules: [] }],
      ['11 rules', { accessBoundaryRules: Array.from({ length: 11 }, () => rule()) }],
      [
        'not a bucket',
        {
          accessBoundaryRules: [
            rule({ availableResource: '//cloudresourcemanager.googleapis.com/projects/acme' }),
          ],
        },
      ],
      [
        'bucket without projects/_',
        { accessBoundaryRules: [rule({ availableResource: `//storage.googleapis.com/buckets/${BUCKET}` })] },
      ],
      ['no permissions', { accessBoundaryRules: [rule({ availablePermissions: [] })] }],
      [
        'a bare permission',
        { accessBoundaryRules: [rule({ availablePermissions: ['storage.objects.get'] })] },
      ],
      [
        'a role outside Storage',
        { accessBoundaryRules: [rule({ availablePermissions: ['inRole:roles/viewer'] })] },
      ],
      [
        'an unknown role',
        { accessBoundaryRules: [rule({ availablePermissions: ['inRole:roles/storage.objectWizard'] })] },
      ],
      ['empty condition', { accessBoundaryRules: [rule({ availabilityCondition: { expression: '' } })] }],
      [
        'CEL syntax',
        {
          accessBoundaryRules: [
            rule({ availabilityCondition: { expression: "resource.name.startsWith('x'" } }),
          ],
        },
      ],
      [
        'CEL unknown attribute',
        { accessBoundaryRules: [rule({ availabilityCondition: { expression: "request.time == 'x'" } })] },
      ],
      [
        'CEL a string, not a condition',
        { accessBoundaryRules: [rule({ availabilityCondition: { expression: 'resource.name' } })] },
      ],
      [
        'CEL unknown API attribute',
        {
          accessBoundaryRules: [
            rule({ availabilityCondition: { expression: "api.getAttribute('x', '') == ''" } }),
          ],
        },
      ],
      [
        'CEL too long',
        {
          accessBoundaryRules: [
            rule({ availabilityCondition: { expression: `resource.name == '${'a'.repeat(2050)}'` } }),
          ],
        },
      ],
      [
        'unknown rule field',
        { accessBoundaryRules: [rule({ availablePermission: ['inRole:roles/storage.objectViewer'] })] },
      ],
    ];
    for (const [name, boundary] of boundaries)
      cases.push([name, cabParams(live, boundary), 'invalid_request']);
    const issued = google.sts.issued.length;
    for (const [name, params, error] of cases) {
      const r = await exchange(params);
      expect([name, r.status, r.json['error']]).toEqual([name, 400, error]);
      expect(typeof r.json['error_description']).toBe('string');
    }
    expect(google.sts.issued.length).toBe(issued);
    // The bounds themselves pass: 10 rules, a 2048-character expression, quotes either way.
    const ten = { accessBoundaryRules: Array.from({ length: 10 }, () => rule()) };
    expect((await exchange(cabParams(live, ten))).status).toBe(200);
    const long = `resource.name == '${'a'.repeat(2048 - 19)}'`;
    expect(long.length).toBe(2048);
    expect(
      (
        await exchange(
          cabParams(live, { accessBoundaryRules: [rule({ availabilityCondition: { expression: long } })] }),
        )
      ).status,
    ).toBe(200);
  });

  it('answers the JSON body of the REST reference like the form, and counts exchanges per source and per boundary', async () => {
    const live = await metadataToken(await google.startMetadataServer({ email: BROKER }));
    const res = await fetch(google.sts.tokenUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        grantType: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
        requestedTokenType: 'urn:ietf:params:oauth:token-type:access_token',
        subjectToken: live,
        options: JSON.stringify({ accessBoundary: BLUE_ADMIN }),
      }),
    });
    const json = (await res.json()) as Record<string, unknown>;
    expect(res.status).toBe(200);
    expect(Object.keys(json).sort()).toEqual([
      'access_token',
      'expires_in',
      'issued_token_type',
      'token_type',
    ]);
    expect(json).toMatchObject({
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
    });
    expect(json['expires_in']).toBeGreaterThan(3590);
    expect((await exchange(cabParams(live, BLUE_ADMIN))).status).toBe(200);
    expect(google.sts.exchangesForSource(live)).toBe(2);
    // Key order does not make another boundary.
    const reordered = JSON.parse(
      JSON.stringify(BLUE_ADMIN, [
        'accessBoundaryRules',
        'availabilityCondition',
        'expression',
        'availablePermissions',
        'availableResource',
      ]),
    );
    expect(google.sts.boundaryKey(reordered)).toBe(google.sts.boundaryKey(BLUE_ADMIN));
    expect(google.sts.exchangesForBoundary(reordered)).toBe(google.sts.exchangesForBoundary(BLUE_ADMIN));
  });

  it('plays faults: OAuth-form status, hang, reset, delay', async () => {
    const live = await metadataToken();
    google.sts.injectFault({
      kind: 'status',
      status: 429,
      retryAfterSeconds: 3,
      description: 'Quota exceeded.',
    });
    const res = await fetch(google.sts.tokenUrl, {
      method: 'POST',
      body: new URLSearchParams(cabParams(live)),
    });
    expect([res.status, res.headers.get('retry-after'), await res.json()]).toEqual([
      429,
      '3',
      { error: 'rate_limit_exceeded', error_description: 'Quota exceeded.' },
    ]);
    google.sts.injectFault({ kind: 'hang' });
    await expect(
      fetch(google.sts.tokenUrl, {
        method: 'POST',
        body: new URLSearchParams(cabParams(live)),
        signal: AbortSignal.timeout(300),
      }),
    ).rejects.toMatchObject({ name: 'TimeoutError' });
    google.sts.injectFault({ kind: 'reset' });
    await expect(exchange(cabParams(live))).rejects.toThrow();
    google.sts.injectFault({ kind: 'delay', ms: 150 });
    const started = performance.now();
    expect((await exchange(cabParams(live))).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
  });

  it("leaves expires_in out for a user's (domain-wide delegated) token; the downscoped token still dies with it", async () => {
    // A user's token, as /token mints it for a keyless account's signJwt-signed, delegated assertion.
    const job = google.registerKeylessAccount('dwd-job@acme.iam.gserviceaccount.com');
    google.grantTokenCreator(job.email, BROKER);
    google.addUser('alice@acme.com');
    google.allowDelegation(job.email, [CLOUD_PLATFORM]);
    const iat = Math.floor(Date.now() / 1000);
    const signed = await fetch(`${google.iamUrl}/v1/projects/-/serviceAccounts/${job.email}:signJwt`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await metadataToken()}` },
      body: JSON.stringify({
        payload: JSON.stringify({
          iss: job.email,
          sub: 'alice@acme.com',
          scope: CLOUD_PLATFORM,
          aud: google.tokenUrl,
          iat,
          exp: iat + 600,
        }),
      }),
    });
    const { signedJwt } = (await signed.json()) as { signedJwt: string };
    const minted = await fetch(google.tokenUrl, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        assertion: signedJwt,
      }),
    });
    const userToken = ((await minted.json()) as { access_token: string }).access_token;
    const r = await exchange(cabParams(userToken));
    expect(r.status).toBe(200);
    expect(r.json['expires_in']).toBeUndefined();
    expect(google.sts.issued.at(-1)).toMatchObject({ email: 'alice@acme.com', sourceToken: userToken });
    expect(await tokeninfo(String(r.json['access_token']))).toMatchObject({ sub: 'alice@acme.com' });
  });
});

describe('Storage stand-in: evaluating boundary conditions', () => {
  it('evaluates resource.type, !, &&, ||, parentheses, ==, endsWith and both quotes on each object read', async () => {
    const source = await metadataToken();
    const bucketRule = (expression: string) => ({
      accessBoundaryRules: [
        {
          availableResource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
          availablePermissions: ['inRole:roles/storage.legacyObjectReader'],
          availabilityCondition: { expression },
        },
      ],
    });
    const cases: Array<[string, boolean, boolean]> = [
      [
        `resource.type == 'storage.googleapis.com/Object' && !resource.name.startsWith("${object('green/')}")`,
        true,
        false,
      ],
      [`resource.type == "storage.googleapis.com/Bucket"`, false, false],
      [
        `(resource.name == '${object(BLUE)}' || resource.name == '${object(GREEN)}') && resource.service == 'storage.googleapis.com'`,
        true,
        true,
      ],
      [`resource.name.endsWith('q1.csv') && !(resource.name.startsWith('${object('blue')}'))`, false, true],
      [`resource.name != '${object(BLUE)}'`, false, true],
      ['true', true, true],
      ['false || false', false, false],
      [`resource.name.startsWith('projects/_/buckets/${BUCKET}/objects/blue/q1.csv\\'')`, false, false],
    ];
    for (const [expression, blue, green] of cases) {
      const r = await exchange(cabParams(source, bucketRule(expression)));
      expect([expression, r.status]).toEqual([expression, 200]);
      const token = String(r.json['access_token']);
      const read = async (name: string) =>
        (
          await fetch(
            `${google.storage.url}/storage/v1/b/${BUCKET}/o/${encodeURIComponent(name)}?alt=media`,
            {
              headers: { Authorization: `Bearer ${token}` },
            },
          )
        ).status === 200;
      expect([expression, await read(BLUE), await read(GREEN)]).toEqual([expression, blue, green]);
    }
  });

  it('checks a list on the bucket: a resource.name condition never grants it, the objectListPrefix attribute does', async () => {
    const source = await metadataToken();
    const rule = (expression: string) => ({
      accessBoundaryRules: [
        {
          availableResource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
          availablePermissions: ['inRole:roles/storage.objectViewer'],
          availabilityCondition: { expression },
        },
      ],
    });
    const list = async (expression: string, prefix?: string) => {
      const token = String((await exchange(cabParams(source, rule(expression)))).json['access_token']);
      const q = prefix === undefined ? '' : `?prefix=${encodeURIComponent(prefix)}`;
      return (
        await fetch(`${google.storage.url}/storage/v1/b/${BUCKET}/o${q}`, {
          headers: { Authorization: `Bearer ${token}` },
        })
      ).status;
    };
    expect(await list(`resource.name.startsWith('${object('blue/')}')`, 'blue/')).toBe(403);
    expect(await list(`resource.name == 'projects/_/buckets/${BUCKET}'`, 'green/')).toBe(200);
    expect(await list(`resource.type == 'storage.googleapis.com/Bucket'`)).toBe(200);
    const byPrefix = "api.getAttribute('storage.googleapis.com/objectListPrefix', '').startsWith('blue/')";
    expect([
      await list(byPrefix, 'blue/'),
      await list(byPrefix, 'blue/q1'),
      await list(byPrefix, 'green/'),
      await list(byPrefix),
    ]).toEqual([200, 200, 403, 403]);
    expect(await list("api.getAttribute('storage.googleapis.com/objectListPrefix', 'none') == ''")).toBe(200);
  });
});

describe('Storage stand-in: as strict as Cloud Storage', () => {
  const get = (path: string, token?: string) =>
    fetch(`${google.storage.url}${path}`, token ? { headers: { Authorization: `Bearer ${token}` } } : {});

  it('answers a missing bearer, an unknown one and a wrong scope in the JSON API error shape', async () => {
    const blue = `/storage/v1/b/${BUCKET}/o/${encodeURIComponent(BLUE)}`;
    const anonymous = await get(blue);
    expect([anonymous.status, await anonymous.json()]).toEqual([
      401,
      {
        error: {
          code: 401,
          message:
            "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).",
          errors: [
            {
              message:
                "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).",
              domain: 'global',
              reason: 'required',
              locationType: 'header',
              location: 'Authorization',
            },
          ],
        },
      },
    ]);
    const unknown = await get(blue, 'ya29.unknown');
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get('www-authenticate')).toContain('invalid_token');
    expect(((await unknown.json()) as { error: { errors: unknown[] } }).error.errors[0]).toMatchObject({
      message: 'Invalid Credentials',
      reason: 'authError',
    });
    const narrow = await google.startMetadataServer({
      email: BROKER,
      scopes: ['https://www.googleapis.com/auth/devstorage.read_only'],
    });
    const readOnly = await metadataToken(narrow);
    expect((await get(blue, readOnly)).status).toBe(200);
    const write = await fetch(
      `${google.storage.url}/upload/storage/v1/b/${BUCKET}/o?uploadType=media&name=blue%2Fro.csv`,
      {
        method: 'POST',
        headers: { Authorization: `Bearer ${readOnly}` },
        body: 'x',
      },
    );
    expect([write.status, ((await write.json()) as { error: { message: string } }).error.message]).toEqual([
      403,
      'Provided scope(s) are not authorized',
    ]);
    const userinfoOnly = await google.startMetadataServer({
      email: BROKER,
      scopes: ['https://www.googleapis.com/auth/userinfo.email'],
    });
    expect((await get(blue, await metadataToken(userinfoOnly))).status).toBe(403);
  });

  it('serves media from both paths with its hashes, 404s what does not exist, and lists with prefix and delimiter', async () => {
    const token = await metadataToken();
    const media = await get(
      `/download/storage/v1/b/${BUCKET}/o/${encodeURIComponent(BLUE)}?alt=media`,
      token,
    );
    expect([media.status, await media.text(), media.headers.get('content-type')]).toEqual([
      200,
      'region,total\nblue,42\n',
      'text/csv',
    ]);
    expect(media.headers.get('x-goog-hash')).toMatch(/^crc32c=[A-Za-z0-9+/]{6}==,md5=[A-Za-z0-9+/]{22}==$/);
    const missing = await get(`/storage/v1/b/${BUCKET}/o/nothing.csv`, token);
    expect([
      missing.status,
      ((await missing.json()) as { error: { message: string } }).error.message,
    ]).toEqual([404, `No such object: ${BUCKET}/nothing.csv`]);
    const listing = (await (await get(`/storage/v1/b/${BUCKET}/o?delimiter=/`, token)).json()) as Record<
      string,
      unknown
    >;
    expect(listing).toEqual({ kind: 'storage#objects', prefixes: ['blue/', 'green/'] });
  });

  it('plays faults in the JSON API error shape, optionally on one operation only', async () => {
    const token = await metadataToken();
    google.storage.injectFault({ kind: 'status', status: 503, only: 'download' });
    const list = await get(`/storage/v1/b/${BUCKET}/o?prefix=blue/`, token);
    expect(list.status).toBe(200);
    const failed = await get(`/storage/v1/b/${BUCKET}/o/${encodeURIComponent(BLUE)}?alt=media`, token);
    expect([failed.status, await failed.json()]).toEqual([
      503,
      {
        error: {
          code: 503,
          message: 'Injected 503.',
          errors: [{ message: 'Injected 503.', domain: 'global', reason: 'backendError' }],
        },
      },
    ]);
    google.storage.injectFault({ kind: 'reset' });
    await expect(get(`/storage/v1/b/${BUCKET}/o`, token)).rejects.toThrow();
    expect((await get(`/storage/v1/b/${BUCKET}/o/${encodeURIComponent(BLUE)}?alt=media`, token)).status).toBe(
      200,
    );
  });
});

describe.skipIf(!pythonAvailable())("STS and Storage stand-ins, driven by Python's google-auth", () => {
  it('downscoped.Credentials gets a token through an adapter that redirects sts.googleapis.com; it reads blue/ and not green/', async () => {
    const before = google.sts.stats.exchanges;
    // google-auth builds https://sts.{universe_domain}/v1/token itself; a requests
    // adapter mounted for that origin sends the request to the stand-in instead
    // and records the URL the library aimed at.
    const out = await runPython(
      `
import json, os
import requests
import google.auth.transport.requests
from google.auth import compute_engine, downscoped

class Redirect(requests.adapters.HTTPAdapter):
    aimed = []
    def send(self, request, **kwargs):
        Redirect.aimed.append(request.url)
        request.url = request.url.replace("https://sts.googleapis.com", os.environ["STS_URL"], 1)
        return super().send(request, **kwargs)

session = requests.Session()
session.mount("https://sts.googleapis.com/", Redirect())
request = google.auth.transport.requests.Request(session)
rule = downscoped.AccessBoundaryRule(
    available_resource="//storage.googleapis.com/projects/_/buckets/${BUCKET}",
    available_permissions=["inRole:roles/storage.objectViewer"],
    availability_condition=downscoped.AvailabilityCondition(
        "resource.name.startsWith('${object('blue/')}')", title="blue objects"))
creds = downscoped.Credentials(
    source_credentials=compute_engine.Credentials(),
    credential_access_boundary=downscoped.CredentialAccessBoundary(rules=[rule]))
creds.refresh(request)
storage = google.auth.transport.requests.AuthorizedSession(creds, auth_request=request)
base = os.environ["STORAGE_URL"] + "/storage/v1/b/${BUCKET}/o/"
blue = storage.get(base + requests.utils.quote("${BLUE}", safe="") + "?alt=media")
green = storage.get(base + requests.utils.quote("${GREEN}", safe="") + "?alt=media")
print(json.dumps({"aimed": Redirect.aimed, "token": creds.token, "expiry": creds.expiry.isoformat(),
    "blue": [blue.status_code, blue.text], "green": [green.status_code, green.json()["error"]["errors"][0]["reason"]]}))
`,
      {
        GCE_METADATA_HOST: metadata.host,
        GCE_METADATA_IP: metadata.host,
        STS_URL: google.sts.url,
        STORAGE_URL: google.storage.url,
      },
    );
    const r = JSON.parse(out) as {
      aimed: string[];
      token: string;
      expiry: string;
      blue: unknown;
      green: unknown;
    };
    expect(r.aimed).toEqual([REAL_STS]);
    expect(r.blue).toEqual([200, 'region,total\nblue,42\n']);
    expect(r.green).toEqual([403, 'forbidden']);
    expect(google.sts.stats.exchanges - before).toBe(1);
    const issued = google.sts.issued.at(-1)!;
    expect(issued).toMatchObject({ token: r.token, email: BROKER });
    expect(issued.boundary.accessBoundaryRules[0]!.availabilityCondition).toEqual({
      expression: `resource.name.startsWith('${object('blue/')}')`,
      title: 'blue objects',
    });
    // Python computes expiry from expires_in: the source token's expiry.
    expect(Math.abs(Date.parse(`${r.expiry}Z`) - issued.exp * 1000)).toBeLessThan(2_000);
    expect(google.storage.requestsWithToken(r.token).map((x) => [x.object, x.status])).toEqual([
      [BLUE, 200],
      [GREEN, 403],
    ]);
  });
});
