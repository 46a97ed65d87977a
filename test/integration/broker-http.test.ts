import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import {
  AUDIENCE,
  BIGQUERY,
  BILLING,
  BLUE,
  CALENDAR,
  DRIVE,
  OPS,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  SYNC_JOB,
  startStack,
} from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;
let billing: string;

beforeAll(async () => {
  stack = await startStack();
  broker = await stack.serveBroker('broker');
  billing = await stack.callerToken(BILLING);
});
afterAll(async () => stack?.close());

const tokenUrl = () => `${broker.url}/token`;

function expectJsonError(
  r: { status: number; headers: Headers; json: Record<string, unknown> },
  status: number,
  error: string,
) {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  expect(r.headers.get('cache-control')).toBe('no-store');
  expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  expect(r.json['error']).toBe(error);
  expect(typeof r.json['error_description']).toBe('string');
}

describe('token end to end', () => {
  it('mints an access token through the Secret Manager stand-in and Google stand-in, then serves it from cache', async () => {
    const before = stack.google.stats.tokensIssued;
    const first = await post(
      tokenUrl(),
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: billing },
    );
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(first.headers.get('cache-control')).toBe('no-store');
    expect(first.json).toMatchObject({ token_type: 'Bearer', scope: BIGQUERY });
    const expiresIn = first.json['expires_in'] as number;
    expect(expiresIn).toBeGreaterThan(3500);
    expect(first.json['expires_at']).toBeCloseTo(Math.floor(Date.now() / 1000) + expiresIn, -1);
    const info = await fetch(`${stack.google.tokeninfoUrl}?access_token=${first.json['access_token']}`);
    expect(await info.json()).toMatchObject({ email: REPORTING, scope: BIGQUERY });

    const second = await post(
      tokenUrl(),
      { serviceAccount: REPORTING, scopes: [BIGQUERY, BIGQUERY] },
      { token: billing },
    );
    expect(second.headers.get('cache-status')).toBe('broker; hit');
    expect(second.json['access_token']).toBe(first.json['access_token']);
    expect(stack.google.stats.tokensIssued - before).toBe(1);
  });

  it('mints a domain-wide-delegated token with sub', async () => {
    const r = await post(
      tokenUrl(),
      { serviceAccount: REPORTING, scopes: [CALENDAR], subject: 'Alice@acme.com' },
      { token: await stack.callerToken(SYNC_JOB) },
    );
    expect(r.status).toBe(200);
    const info = (await (
      await fetch(`${stack.google.tokeninfoUrl}?access_token=${r.json['access_token']}`)
    ).json()) as Record<string, unknown>;
    expect(info).toMatchObject({ email: REPORTING, sub: 'alice@acme.com' });
  });

  it("turns Google's refusals into 502 upstream_rejected with what to do", async () => {
    const r = await post(
      tokenUrl(),
      { serviceAccount: REPORTING, scopes: [CALENDAR], subject: 'nobody@acme.com' },
      { token: await stack.callerToken(SYNC_JOB) },
    );
    expectJsonError(r, 502, 'upstream_rejected');
    expect(r.json['upstream_error']).toBe('invalid_grant');
    expect(String(r.json['error_description'])).toMatch(/sub|user|subject/i);
  });

  it('answers 503 with Retry-After when Google stays unavailable, never HTML', async () => {
    stack.google.injectFault({ kind: 'status', status: 503, body: '<html>down</html>' }, 10);
    const r = await post(
      tokenUrl(),
      { tenant: 'green', scopes: [DRIVE] },
      { token: await stack.callerToken(PLATFORM) },
    );
    stack.google.reset?.();
    expectJsonError(r, 503, 'upstream_unavailable');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });
});

describe('key rotation', () => {
  it('reads the secret again once when Google says the key was deleted, and recovers', async () => {
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY], minLifetimeSeconds: 3300 };
    await post(tokenUrl(), body, { token: billing }); // the broker now holds the key in memory
    const reads = stack.secretManager.stats.accessCalls;
    stack.rotateKey(REPORTING);
    await post(
      `${broker.url}/admin/purge`,
      { serviceAccount: REPORTING },
      { token: await stack.callerToken(OPS) },
    );
    const r = await post(tokenUrl(), body, { token: billing });
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(stack.secretManager.stats.accessCalls - reads).toBe(1);
  });
});

describe('per-tenant, jwt and idtoken', () => {
  it('serves a tenant its own account only', async () => {
    const platform = await stack.callerToken(PLATFORM);
    const r = await post(tokenUrl(), { tenant: 'blue', scopes: [DRIVE] }, { token: platform });
    expect(r.status).toBe(200);
    const info = (await (
      await fetch(`${stack.google.tokeninfoUrl}?access_token=${r.json['access_token']}`)
    ).json()) as Record<string, unknown>;
    expect(info['email']).toBe(BLUE);
  });

  it('issues a self-signed JWT with kid = private_key_id, and no call to Google', async () => {
    const before = stack.google.stats.tokenRequests;
    const r = await post(
      `${broker.url}/jwt`,
      { tenant: 'blue', audience: 'https://drive.googleapis.com/' },
      { token: await stack.callerToken(PLATFORM) },
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(r.json).toMatchObject({ token_type: 'Bearer' });
    const [h, c] = String(r.json['token']).split('.');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
    const claims = JSON.parse(Buffer.from(c!, 'base64url').toString()) as Record<string, unknown>;
    expect(header).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    expect(typeof header['kid']).toBe('string');
    expect(claims).toMatchObject({ iss: BLUE, sub: BLUE, aud: 'https://drive.googleapis.com/' });
    expect(Number(claims['exp']) - Number(claims['iat'])).toBe(3600);
    expect(stack.google.stats.tokenRequests).toBe(before);
  });

  it('issues a Google-signed ID token for an audience', async () => {
    const r = await post(
      `${broker.url}/idtoken`,
      { tenant: 'blue', audience: 'https://drive.googleapis.com/' },
      { token: await stack.callerToken(PLATFORM) },
    );
    expect(r.status).toBe(200);
    expect(r.json['expires_in']).toBeGreaterThan(3000);
    const claims = JSON.parse(
      Buffer.from(String(r.json['id_token']).split('.')[1]!, 'base64url').toString(),
    ) as Record<string, unknown>;
    expect(claims).toMatchObject({ aud: 'https://drive.googleapis.com/', email: BLUE });
  });
});

describe('policy over HTTP', () => {
  it('answers unknown and forbidden targets with the same 403 body', async () => {
    const unknown = await post(
      tokenUrl(),
      { serviceAccount: 'ghost@acme.iam.gserviceaccount.com', scopes: [BIGQUERY] },
      { token: billing },
    );
    const forbidden = await post(tokenUrl(), { tenant: 'blue', scopes: [BIGQUERY] }, { token: billing });
    const badScope = await post(
      tokenUrl(),
      { serviceAccount: REPORTING, scopes: [CALENDAR] },
      { token: billing },
    );
    for (const r of [unknown, forbidden, badScope]) expectJsonError(r, 403, 'access_denied');
    expect(unknown.json).toEqual(forbidden.json);
    expect(unknown.json).toEqual(badScope.json);
  });

  it('lets only admins purge, and a purge forces a fresh mint', async () => {
    const denied = await post(`${broker.url}/admin/purge`, { all: true }, { token: billing });
    expectJsonError(denied, 403, 'access_denied');
    await post(tokenUrl(), { serviceAccount: REPORTING, scopes: [BIGQUERY] }, { token: billing });
    const purged = await post(
      `${broker.url}/admin/purge`,
      { serviceAccount: REPORTING },
      { token: await stack.callerToken(OPS) },
    );
    expect(purged.status).toBe(200);
    expect(purged.json['purged']).toEqual([REPORTING]);
    const after = await post(
      tokenUrl(),
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: billing },
    );
    expect(after.headers.get('cache-status')).toBe('broker; fwd=miss');
  });
});

describe('caller authentication', () => {
  const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = () => {
    const now = Math.floor(Date.now() / 1000);
    return {
      iss: stack.google.issuer,
      aud: AUDIENCE,
      sub: '1',
      email: BILLING,
      email_verified: true,
      iat: now,
      exp: now + 600,
    };
  };

  async function expect401(token: string | undefined) {
    const r = await post(tokenUrl(), body, token === undefined ? {} : { token });
    expectJsonError(r, 401, 'invalid_token');
    expect(r.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    expect(r.text).not.toContain(token ?? '\u0000');
  }

  it('refuses a missing token', () => expect401(undefined));
  it('refuses alg:none', () => expect401(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`));
  it('refuses HS256 signed with the public key', async () => {
    const jwks = (await (await fetch(stack.google.jwksUrl)).json()) as {
      keys: Array<Record<string, unknown>>;
    };
    const pem = createPublicKey({ key: jwks.keys[0] as never, format: 'jwk' }).export({
      type: 'spki',
      format: 'pem',
    });
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: String(jwks.keys[0]?.['kid']) })
      .sign(new TextEncoder().encode(String(pem)));
    await expect401(token);
  });
  it('refuses a token signed by another key', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwks = (await (await fetch(stack.google.jwksUrl)).json()) as {
      keys: Array<Record<string, unknown>>;
    };
    const key = await importPKCS8(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256');
    await expect401(
      await new SignJWT(claims())
        .setProtectedHeader({ alg: 'RS256', kid: String(jwks.keys[0]?.['kid']) })
        .sign(key),
    );
  });
  it('refuses a wrong audience', async () =>
    expect401(await stack.callerToken(BILLING, { audience: 'https://other.example' })));
  it('refuses a wrong issuer, an expired token and an unverified email', async () => {
    await expect401(
      await stack.google.issueIdToken({ email: BILLING, audience: AUDIENCE, issuer: 'https://evil.example' }),
    );
    await expect401(
      await stack.google.issueIdToken({
        email: BILLING,
        audience: AUDIENCE,
        iat: Math.floor(Date.now() / 1000) - 7200,
        lifetimeSeconds: 3600,
      }),
    );
    await expect401(
      await stack.google.issueIdToken({ email: BILLING, audience: AUDIENCE, emailVerified: false }),
    );
  });
  it('refuses a token whose signature Cloud Run removed, unless the operator allows it', async () => {
    const [h, c] = billing.split('.');
    await expect401(`${h}.${c}.SIGNATURE_REMOVED_BY_GOOGLE`);
  });
});

describe('every failure is JSON with the contract code', () => {
  it('405 for anything but POST', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const r = await post(tokenUrl(), undefined, { method, token: billing });
      expectJsonError(r, 405, 'method_not_allowed');
      expect(r.headers.get('allow')).toBe('POST');
    }
  });
  it('415 for a body that is not JSON', async () => {
    const r = await post(tokenUrl(), undefined, {
      raw: 'a=b',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      token: billing,
    });
    expectJsonError(r, 415, 'unsupported_media_type');
    const text = await post(tokenUrl(), undefined, {
      raw: '{}',
      headers: { 'Content-Type': 'text/plain' },
      token: billing,
    });
    expectJsonError(text, 415, 'unsupported_media_type');
  });
  it('400 JSON, not the framework HTML, for malformed JSON', async () => {
    for (const raw of ['{', '{"a":', 'nul', '{"serviceAccount": }', '"just a string"', '\u0000']) {
      const r = await post(tokenUrl(), undefined, { raw, token: billing });
      expectJsonError(r, 400, 'invalid_request');
      expect(r.text).not.toMatch(/<html|<pre|at /i);
    }
  });
  it('413 over 64 KiB, announced or chunked', async () => {
    const big = JSON.stringify({ serviceAccount: REPORTING, scopes: [BIGQUERY], pad: 'x'.repeat(70 * 1024) });
    expectJsonError(
      await post(tokenUrl(), undefined, { raw: big, token: billing }),
      413,
      'request_too_large',
    );
    const chunked = await fetch(tokenUrl(), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${billing}` },
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(big));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as Record<string, unknown>)['error']).toBe('request_too_large');
  });
  it('404 JSON for an unknown path', async () => {
    expectJsonError(await post(`${broker.url}/nope`, {}, { token: billing }), 404, 'not_found');
    expectJsonError(await post(`${broker.url}/favicon.ico`, undefined, { method: 'GET' }), 404, 'not_found');
    expectJsonError(await post(`${broker.url}/robots.txt`, {}, {}), 404, 'not_found');
  });
  it('400 for bad bodies, never a 5xx', async () => {
    const bodies: unknown[] = [
      {},
      [],
      { serviceAccount: REPORTING },
      { serviceAccount: REPORTING, tenant: 'blue', scopes: [BIGQUERY] },
      { serviceAccount: REPORTING, scopes: [`${BIGQUERY} ${CALENDAR}`] },
      { serviceAccount: REPORTING, scopes: [BIGQUERY], minLifetimeSeconds: 4000 },
      { serviceAccount: REPORTING, scopes: [BIGQUERY], subject: '*@acme.com' },
      { serviceAccount: { $ne: 1 }, scopes: [BIGQUERY] },
      JSON.parse('{"__proto__":{"x":1},"serviceAccount":"a@b.co","scopes":["s"]}'),
    ];
    for (const b of bodies)
      expectJsonError(await post(tokenUrl(), b, { token: billing }), 400, 'invalid_request');
  });
});

describe('logs', () => {
  it('writes one structured audit line per decision, with no token or credential', async () => {
    const r = await post(
      tokenUrl(),
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      {
        token: billing,
        headers: { 'X-Cloud-Trace-Context': '105445aa7843bc8bf206b12000100000/1;o=1' },
      },
    );
    await new Promise((res) => setTimeout(res, 100));
    const line = broker.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l['requestId'] === r.headers.get('x-request-id'));
    expect(line).toMatchObject({
      severity: 'INFO',
      message: 'token served',
      trace: '105445aa7843bc8bf206b12000100000',
      httpRequest: { requestMethod: 'POST', status: 200 },
      audit: {
        operation: 'token',
        caller: BILLING,
        serviceAccount: REPORTING,
        scopes: [BIGQUERY],
        decision: 'allow',
        cache: 'hit',
      },
    });
    expect(String((line?.['audit'] as Record<string, unknown> | undefined)?.['tokenFingerprint'])).toMatch(
      /^sha256:[\w-]{16}$/,
    );
    const all = broker.lines.join('\n');
    expect(all).not.toContain(String(r.json['access_token']));
    expect(all).not.toContain(billing.split('.')[2]!);
    expect(all).not.toContain('PRIVATE KEY');
  });
});
