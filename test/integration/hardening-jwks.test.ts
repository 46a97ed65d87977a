import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { AUDIENCE, BIGQUERY, BILLING, post, REPORTING, type Stack, startStack } from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;
let jwks: Server;
/** Whether the JWKS endpoint in front of the Google stand-in answers, and how often it was asked. */
let up = false;
let fetches = 0;

beforeAll(async () => {
  stack = await startStack();
  // The broker's JWKS URL: a door in front of the stand-in's keys that counts fetches and can fail them.
  jwks = createServer((_req, res) => {
    fetches++;
    if (!up) {
      res.writeHead(503, { 'Content-Type': 'text/plain' });
      res.end('down');
      return;
    }
    fetch(stack.google.jwksUrl).then(
      async (r) => {
        res.writeHead(r.status, { 'Content-Type': 'application/json' });
        res.end(await r.text());
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/oauth2/v3/certs`;
  broker = await stack.serveBroker('broker', { BROKER_JWKS_URL: url });
});
afterAll(async () => {
  jwks?.closeAllConnections();
  jwks?.close();
  await stack?.close();
});

describe('the JWKS before its first successful fetch', () => {
  it('is fetched once per wait, not once per request, while it fails; then recovers', async () => {
    // Tokens that are well formed, so verifying them needs the keys: signed by someone else's key.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const now = Math.floor(Date.now() / 1000);
    const bad = await new SignJWT({
      iss: stack.google.issuer,
      aud: AUDIENCE,
      email: BILLING,
      email_verified: true,
      iat: now,
      exp: now + 3600,
    })
      .setProtectedHeader({ alg: 'RS256', kid: 'whatever' })
      .sign(privateKey);
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    const before = fetches;
    const statuses = new Map<number, number>();
    const started = Date.now();
    // 200 requests: 100 at once, then 100 one after another.
    const results = await Promise.all(
      Array.from({ length: 100 }, () => post(`${broker.url}/token`, body, { token: bad })),
    );
    for (let i = 0; i < 100; i++) results.push(await post(`${broker.url}/token`, body, { token: bad }));
    const elapsedMs = Date.now() - started;
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    const during = fetches - before;
    console.log(
      `jwks: 200 requests in ${elapsedMs} ms → ${during} fetches; statuses ${JSON.stringify([...statuses])}`,
    );
    expect(results.every((r) => r.status === 503 && r.json['error'] === 'upstream_unavailable')).toBe(true);
    expect(results.every((r) => Number(r.headers.get('retry-after')) >= 1)).toBe(true);
    // Retries are spaced 1 s, 2 s, 4 s ... apart after the first failure.
    expect(during).toBeLessThanOrEqual(1 + Math.ceil(Math.log2(1 + elapsedMs / 1000)));

    up = true;
    const billing = await stack.callerToken(BILLING);
    let ok = await post(`${broker.url}/token`, body, { token: billing });
    for (let i = 0; i < 100 && ok.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ok = await post(`${broker.url}/token`, body, { token: billing });
    }
    expect(ok.status).toBe(200);
  }, 30_000);
});
