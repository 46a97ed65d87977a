import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, importPKCS8, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateServiceAccountKey } from '../../infra/google/keys.js';
import { type GoogleStandIn, startGoogleStandIn } from '../../infra/google/server.js';

const SA = 'sa@acme.iam.gserviceaccount.com';
const SCOPE = 'https://www.googleapis.com/auth/calendar.readonly';
let google: GoogleStandIn;
let key: ReturnType<typeof generateServiceAccountKey>;

beforeAll(async () => {
  google = await startGoogleStandIn();
  key = generateServiceAccountKey({ email: SA, projectId: 'acme' });
  google.registerServiceAccount({
    email: SA,
    clientId: key.json.client_id,
    keyId: key.json.private_key_id,
    publicKeyPem: key.publicKeyPem,
  });
  google.addUser('alice@acme.com');
  google.allowDelegation(SA, [SCOPE]);
});
afterAll(async () => google?.close());

async function assertion(
  claims: Record<string, unknown> = {},
  pem = key.json.private_key,
  kid = key.json.private_key_id,
) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: SA, scope: SCOPE, aud: google.tokenUrl, iat: now, exp: now + 3600, ...claims })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid })
    .sign(await importPKCS8(pem, 'RS256'));
}

async function exchange(jwt: string, grant = 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
  const res = await fetch(google.tokenUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: grant, assertion: jwt }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('Google OAuth stand-in', () => {
  it('mints an access token for a valid assertion and describes it at tokeninfo', async () => {
    const r = await exchange(await assertion({ sub: 'alice@acme.com' }));
    expect(r).toMatchObject({ status: 200, json: { token_type: 'Bearer', expires_in: 3599, scope: SCOPE } });
    const info = await (await fetch(`${google.tokeninfoUrl}?access_token=${r.json['access_token']}`)).json();
    expect(info).toMatchObject({ email: SA, scope: SCOPE, sub: 'alice@acme.com' });
    expect((await fetch(`${google.tokeninfoUrl}?access_token=ya29.nope`)).status).toBe(400);
  });

  it("answers each broken rule with the seed's error", async () => {
    const other = generateServiceAccountKey({ email: SA, projectId: 'acme' });
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string | Promise<string>, string, string?]> = [
      [assertion({}, other.json.private_key), 'invalid_grant', 'Invalid JWT Signature.'],
      [
        assertion({ exp: now + 4000 }),
        'invalid_grant',
        'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
      ],
      [assertion({ iat: now + 900, exp: now + 4500 }), 'invalid_grant'],
      [assertion({ scope: `${SCOPE},https://www.googleapis.com/auth/drive` }), 'invalid_scope'],
      [assertion({ scope: '' }), 'invalid_scope'],
      [assertion({ sub: 'nobody@acme.com' }), 'invalid_grant', 'Not a valid email.'],
      [
        assertion({ sub: 'alice@acme.com', scope: 'https://www.googleapis.com/auth/drive' }),
        'unauthorized_client',
      ],
      [assertion({ aud: 'https://oauth2.googleapis.com/token' }), 'invalid_grant'],
      [assertion({ iss: 'ghost@acme.iam.gserviceaccount.com' }), 'invalid_client'],
      [
        `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}.x`,
        'invalid_grant',
      ],
      [assertion().then((j) => `${j}=`), 'invalid_grant'],
    ];
    for (const [jwt, error, description] of cases) {
      const r = await exchange(await jwt);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.json['error']).toBe(error);
      if (description) expect(r.json['error_description']).toBe(description);
    }
    expect((await exchange(await assertion(), 'client_credentials')).json['error']).toBe(
      'unsupported_grant_type',
    );
  });

  it('refuses deleted and disabled keys', async () => {
    const k = generateServiceAccountKey({ email: SA, projectId: 'acme' });
    google.registerServiceAccount({
      email: SA,
      clientId: k.json.client_id,
      keyId: k.json.private_key_id,
      publicKeyPem: k.publicKeyPem,
    });
    const signed = () => assertion({}, k.json.private_key, k.json.private_key_id);
    expect((await exchange(await signed())).status).toBe(200);
    google.disableKey(k.json.private_key_id);
    expect((await exchange(await signed())).json['error']).toBe('disabled_client');
    google.deleteKey(k.json.private_key_id);
    expect((await exchange(await signed())).json).toMatchObject({
      error: 'invalid_grant',
      error_description: 'Invalid JWT Signature.',
    });
  });

  it('mints ID tokens for target_audience, and caller ID tokens, both verifiable with its JWKS', async () => {
    const jwks = createRemoteJWKSet(new URL(google.jwksUrl));
    const r = await exchange(
      await assertion({ scope: undefined, target_audience: 'https://svc.example.com' }),
    );
    const { payload } = await jwtVerify(String(r.json['id_token']), jwks, {
      issuer: google.issuer,
      audience: 'https://svc.example.com',
    });
    expect(payload).toMatchObject({ email: SA, email_verified: true });
    const caller = await google.issueIdToken({
      email: 'billing@acme.iam.gserviceaccount.com',
      audience: 'https://broker',
    });
    expect((await jwtVerify(caller, jwks, { audience: 'https://broker' })).payload['email']).toBe(
      'billing@acme.iam.gserviceaccount.com',
    );
  });

  it('plays injected faults in order and counts requests', async () => {
    const before = { ...google.stats };
    google.injectFault({ kind: 'status', status: 503, retryAfterSeconds: 2, body: '<html>x</html>' });
    google.injectFault({ kind: 'error', error: 'invalid_grant', description: 'Invalid JWT Signature.' });
    google.injectFault({ kind: 'reset' });
    google.injectFault({ kind: 'delay', ms: 200 });
    const jwt = await assertion();
    const res = await fetch(google.tokenUrl, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'x', assertion: jwt }),
    });
    expect([res.status, res.headers.get('retry-after'), await res.text()]).toEqual([
      503,
      '2',
      '<html>x</html>',
    ]);
    expect((await exchange(jwt)).json['error_description']).toBe('Invalid JWT Signature.');
    await expect(exchange(jwt)).rejects.toThrow();
    const started = Date.now();
    expect((await exchange(jwt)).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(google.stats.tokenRequests - before.tokenRequests).toBe(4);
    expect(google.stats.tokensIssued - before.tokensIssued).toBe(1);
  });
});

describe('the standalone Google stand-in process (infra/google/main.ts)', () => {
  const main = fileURLToPath(new URL('../../dist/infra/google/main.js', import.meta.url));

  it('starts a metadata server and keyless accounts from flags, and they mint end to end', async () => {
    const child = spawn(
      process.execPath,
      [
        main,
        '--port',
        '0',
        '--iam-port',
        '0',
        '--metadata-port',
        '0',
        '--keyless',
        'job@demo.iam.gserviceaccount.com',
      ],
      { env: { ...process.env, GOOGLE_STANDIN_METADATA_EMAIL: 'broker@demo.iam.gserviceaccount.com' } },
    );
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      await vi.waitFor(() => expect(out).toContain('GCE_METADATA_HOST='), { timeout: 15_000 });
      const value = (name: string) => new RegExp(`${name}=(\\S+)`).exec(out)?.[1] ?? '';
      const tokeninfoUrl = /tokeninfo (\S+)/.exec(out)?.[1] ?? '';
      expect(out).toMatch(
        /broker@demo\.iam\.gserviceaccount\.com is roles\/iam\.serviceAccountTokenCreator on job@demo/,
      );
      const md = await fetch(
        `http://${value('GCE_METADATA_HOST')}/computeMetadata/v1/instance/service-accounts/default/token`,
        {
          headers: { 'Metadata-Flavor': 'Google' },
        },
      );
      const { access_token } = (await md.json()) as { access_token: string };
      const res = await fetch(
        `${value('BROKER_IAM_CREDENTIALS_URL')}/v1/projects/-/serviceAccounts/job@demo.iam.gserviceaccount.com:generateAccessToken`,
        {
          method: 'POST',
          headers: { Authorization: `Bearer ${access_token}` },
          body: JSON.stringify({ scope: ['https://www.googleapis.com/auth/cloud-platform'] }),
        },
      );
      const { accessToken } = (await res.json()) as { accessToken: string };
      const info = (await (await fetch(`${tokeninfoUrl}?access_token=${accessToken}`)).json()) as Record<
        string,
        unknown
      >;
      expect(info['email']).toBe('job@demo.iam.gserviceaccount.com');
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('refuses bad options with exit code 2 and a message naming each problem', () => {
    const r = spawnSync(
      process.execPath,
      [main, '--port', 'x', '--keyless', 'not-an-email', '--grant', 'a=b=c'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('GOOGLE_STANDIN_PORT: not a port: x');
    expect(r.stderr).toContain('keyless account: not an email: not-an-email');
    expect(r.stderr).toContain('grant: expected ACCOUNT=MEMBER, got a=b=c');
  });
});
