import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallerVerifierOptions, createCallerVerifier } from '../../shared/adapters/caller-auth.js';
import { BrokerError } from '../../shared/errors.js';
import type { SigningKey } from '../../shared/jwt/sign.js';

const ISS = 'https://accounts.google.com';
const AUD = 'https://broker.example.com';
let server: Server;
let jwksUrl: string;
let jwksUp = true;
let jwksFetches = 0;
let jwks: { keys: JWK[] };
let key: SigningKey;
let publicPem: string;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  key = pair.privateKey;
  publicPem = await exportSPKI(pair.publicKey);
  jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] };
  server = createServer((_req, res) => {
    jwksFetches++;
    if (!jwksUp) {
      res.writeHead(503);
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(jwks));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/certs`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const verifier = (o: Partial<CallerVerifierOptions> = {}) =>
  createCallerVerifier({
    jwksUrl,
    issuers: [ISS, 'accounts.google.com'],
    audience: AUD,
    clockToleranceSeconds: 30,
    allowSignatureRemovedByGoogle: false,
    ...o,
  });

async function token(
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
  signWith: SigningKey | Uint8Array = key,
) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: ISS,
    aud: AUD,
    sub: '1234',
    email: 'Billing@acme.iam.gserviceaccount.com',
    email_verified: true,
    iat: now,
    exp: now + 3600,
    ...claims,
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1', ...header } as never)
    .sign(signWith);
}

async function rejects(v: ReturnType<typeof verifier>, authorization: string | undefined, reason: RegExp) {
  const err = await v.verify(authorization, undefined).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BrokerError);
  expect((err as BrokerError).code).toBe('invalid_token');
  expect((err as BrokerError).message).toMatch(reason);
  if (authorization) expect((err as BrokerError).message).not.toContain(authorization.slice(7, 40));
}

describe('caller authentication', () => {
  it('accepts a Google-style ID token and canonicalises the email', async () => {
    expect(await verifier().verify(`Bearer ${await token()}`, undefined)).toEqual({
      principal: 'billing@acme.iam.gserviceaccount.com',
      email: 'billing@acme.iam.gserviceaccount.com',
      sub: '1234',
      iss: ISS,
      issuer: undefined,
    });
  });

  it('refuses every forgery', async () => {
    const v = verifier();
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: ISS, aud: AUD, email: 'a@b.co', email_verified: true, iat: now, exp: now + 600 };
    await rejects(v, undefined, /Authorization: Bearer/);
    await rejects(v, 'Basic abc', /not `Bearer <JWT>`/);
    await rejects(v, `Bearer ${b64({ alg: 'none' })}.${b64(claims)}.`, /only RS256/);
    await rejects(
      v,
      `Bearer ${await token({}, { alg: 'HS256' }, new TextEncoder().encode(publicPem))}`,
      /only RS256/,
    );
    const other = (await generateKeyPair('RS256')).privateKey;
    await rejects(v, `Bearer ${await token({}, {}, other)}`, /signature/);
    await rejects(
      v,
      `Bearer ${await token({}, { kid: 'unknown' }, other)}`,
      /`kid` is not in its issuer's key set/,
    );
    await rejects(v, `Bearer ${await token({}, { kid: undefined })}`, /names no `kid`/);
    await rejects(v, `Bearer ${await token({ iat: now, exp: now + 86_401 })}`, /more than 24 hours/);
    await rejects(v, `Bearer ${await token({ aud: 'https://other.example.com' })}`, /another audience/);
    await rejects(v, `Bearer ${await token({ iss: 'https://evil.example.com' })}`, /wrong issuer/);
    await rejects(v, `Bearer ${await token({ iat: now - 7200, exp: now - 3600 })}`, /expired/);
    await rejects(v, `Bearer ${await token({ iat: now + 600, exp: now + 4200 })}`, /future/);
    await rejects(v, `Bearer ${await token({ email: undefined })}`, /verified email|valid email/);
    await rejects(v, `Bearer ${await token({ email_verified: false })}`, /verified email/);
    await rejects(v, `Bearer ${await token({ email_verified: 'true' })}`, /verified email/);
    await rejects(v, `Bearer ${await token({ email: 'b\u212Aa@acme.com' })}`, /valid email/);
  });

  it('refuses a token replayed after it expired, within the tolerance only', async () => {
    let now = Date.now();
    const v = verifier({ now: () => now });
    const t = await token();
    await v.verify(`Bearer ${t}`, undefined);
    now += 3600_000 + 20_000; // inside the 30 s tolerance
    await v.verify(`Bearer ${t}`, undefined);
    now += 20_000;
    await rejects(v, `Bearer ${t}`, /expired/);
  });

  it('refuses signatures removed by Cloud Run unless the operator allows them, and still checks the claims', async () => {
    const [h, c] = (await token()).split('.');
    await rejects(verifier(), `Bearer ${h}.${c}.SIGNATURE_REMOVED_BY_GOOGLE`, /X-Serverless-Authorization/);
    const allowing = verifier({ allowSignatureRemovedByGoogle: true });
    expect((await allowing.verify(`Bearer ${h}.${c}.SIGNATURE_REMOVED_BY_GOOGLE`, undefined)).email).toBe(
      'billing@acme.iam.gserviceaccount.com',
    );
    // With X-Serverless-Authorization present, Cloud Run checked that header and not this one.
    for (const serverless of [`Bearer ${await token({ email: 'attacker@acme.com' })}`, '']) {
      const err = await allowing
        .verify(`Bearer ${h}.${c}.SIGNATURE_REMOVED_BY_GOOGLE`, serverless)
        .catch((e) => e);
      expect(err).toBeInstanceOf(BrokerError);
      expect((err as BrokerError).code).toBe('invalid_token');
    }
    const [h2, c2] = (await token({ aud: 'https://other.example.com' })).split('.');
    await rejects(allowing, `Bearer ${h2}.${c2}.SIGNATURE_REMOVED_BY_GOOGLE`, /another audience/);
  });

  it('keeps verifying with cached keys while the JWKS endpoint is down, and refetches an unknown kid with a cooldown', async () => {
    let now = Date.now();
    const v = verifier({ now: () => now });
    await v.verify(`Bearer ${await token()}`, undefined);
    jwksUp = false;
    const before = jwksFetches;
    await v.verify(`Bearer ${await token()}`, undefined);
    now += 61_000; // past the refetch cooldown (a minute)
    await rejects(v, `Bearer ${await token({}, { kid: 'rotated' })}`, /`kid`/);
    await rejects(v, `Bearer ${await token({}, { kid: 'rotated' })}`, /`kid`/);
    expect(jwksFetches - before).toBe(1); // one refetch for the unknown kid, then the cooldown
    jwksUp = true;
  });

  it('before the first key: one fetch per wait, 1 s then doubling, whatever the number of requests', async () => {
    let now = Date.now();
    const v = verifier({ now: () => now });
    jwksUp = false;
    const before = jwksFetches;
    const bad = async () => {
      const err = await v.verify(`Bearer ${await token()}`, undefined).catch((e: unknown) => e);
      expect((err as BrokerError).code).toBe('upstream_unavailable');
      return err as BrokerError;
    };
    await Promise.all(Array.from({ length: 20 }, bad));
    for (let i = 0; i < 20; i++) await bad();
    expect(jwksFetches - before).toBe(1);
    now += 1_001;
    expect((await bad()).retryAfterSeconds).toBe(2); // the second failure waits 2 s
    for (let i = 0; i < 20; i++) await bad();
    expect(jwksFetches - before).toBe(2);
    jwksUp = true;
    now += 2_001;
    expect((await v.verify(`Bearer ${await token()}`, undefined)).email).toBe(
      'billing@acme.iam.gserviceaccount.com',
    );
    expect(jwksFetches - before).toBe(3);
  });
});
