import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTokenEndpoint } from '../../shared/adapters/token-endpoint.js';
import { BrokerError } from '../../shared/errors.js';
import { isKeyRejected } from '../../shared/upstream-errors.js';

type Play = (req: IncomingMessage, res: ServerResponse, body: string) => void;
const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Play =>
  (_q, res) => {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
const OK: Play = json(200, {
  access_token: 'ya29.ok',
  token_type: 'Bearer',
  expires_in: 3599,
  scope: 's1 s2',
});

let server: Server;
let url: string;
let script: Play[] = [];
let seen: string[] = [];
let connections = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push(body);
      (script.shift() ?? OK)(req, res, body);
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});
beforeEach(() => {
  script = [];
  seen = [];
});

const sleeps: number[] = [];
const endpoint = (o: Partial<Parameters<typeof createTokenEndpoint>[0]> = {}) =>
  createTokenEndpoint({
    tokenUrl: url,
    baseDelayMs: 10,
    maxDelayMs: 50,
    sleep: async (ms) => {
      sleeps.push(ms);
      await new Promise((r) => setTimeout(r, Math.min(ms, 20)));
    },
    ...o,
  });
const caught = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as BrokerError,
  );

describe('token endpoint adapter', () => {
  it('posts the jwt-bearer grant form-encoded and checks the answer', async () => {
    expect(await endpoint().exchange('a.b.c', 'access_token')).toEqual({
      token: 'ya29.ok',
      expiresIn: 3599,
      scope: 's1 s2',
    });
    expect(seen[0]).toBe('grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c');
  });

  it('reads ID tokens, with expires_in taken from exp', async () => {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const idToken = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.sig`;
    script = [json(200, { id_token: idToken })];
    const r = await endpoint().exchange('a.b.c', 'id_token');
    expect(r.token).toBe(idToken);
    expect(r.expiresIn).toBeGreaterThan(3590);
  });

  it.each([
    [
      { error: 'unauthorized_client', error_description: 'Unauthorized client or scope in request.' },
      /Admin console/,
    ],
    [
      {
        error: 'unauthorized_client',
        error_description:
          'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
      },
      /numeric client ID/,
    ],
    [
      { error: 'access_denied', error_description: 'Requested client not authorized.' },
      /not authorized for delegation/,
    ],
    [{ error: 'admin_policy_enforced' }, /admin policy/],
    [
      { error: 'invalid_client', error_description: 'The OAuth client was not found.' },
      /malformed or misconfigured/,
    ],
    [{ error: 'invalid_grant', error_description: 'Not a valid email.' }, /user in `subject` does not exist/],
    [
      {
        error: 'invalid_grant',
        error_description:
          'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
      },
      /clock/,
    ],
    [
      { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' },
      /deleted, disabled or has expired/,
    ],
    [
      { error: 'invalid_scope', error_description: 'Invalid OAuth scope or ID token audience provided.' },
      /scope is unknown/,
    ],
    [{ error: 'disabled_client', error_description: 'The OAuth client was disabled.' }, /disabled/],
    [
      {
        error: 'org_internal',
        error_description: 'This client is restricted to users within its organization.',
      },
      /organization/,
    ],
  ])('maps %j to 502 with what to do, without retrying', async (body, what) => {
    script = [json(400, body)];
    const err = await caught(endpoint().exchange('a.b.c', 'access_token'));
    expect(err).toBeInstanceOf(BrokerError);
    expect(err).toMatchObject({ code: 'upstream_rejected', upstreamError: body.error });
    expect(err?.message).toMatch(what);
    expect(err?.message).toMatch(/^Google's token endpoint refused the request/);
    expect(seen).toHaveLength(1);
    expect(JSON.stringify(err)).not.toContain('error_description');
    expect(isKeyRejected(err)).toBe(
      (body as { error_description?: string }).error_description === 'Invalid JWT Signature.',
    );
  });

  it.each([
    [{ token_type: 'Bearer', expires_in: 3600 }],
    [{ access_token: 'x', token_type: 'mac', expires_in: 3600 }],
    [{ access_token: 'x', token_type: 'Bearer', expires_in: '3600' }],
    [{ access_token: 'x', token_type: 'Bearer', expires_in: -1 }],
    [[1, 2]],
  ])('refuses a malformed 200: %j', async (body) => {
    script = [json(200, body)];
    expect(await caught(endpoint().exchange('a.b.c', 'access_token'))).toMatchObject({
      upstreamError: 'invalid_response',
    });
  });

  it('retries an HTML 502, a reset connection and a 429 with Retry-After', async () => {
    sleeps.length = 0;
    script = [
      (_q, res) => {
        res.writeHead(502, { 'Content-Type': 'text/html' });
        res.end('<html>bad gateway</html>');
      },
      (req) => req.socket.destroy(),
      json(429, { error: 'rate_limit' }, { 'Retry-After': '1' }),
    ];
    expect((await endpoint().exchange('a.b.c', 'access_token')).token).toBe('ya29.ok');
    expect(seen).toHaveLength(4);
    expect(sleeps[2]).toBeGreaterThanOrEqual(1000);
  });

  it('gives up as 503 upstream_unavailable with Retry-After after the attempts', async () => {
    script = Array.from({ length: 10 }, () => json(503, {}, { 'Retry-After': '2' }));
    const err = await caught(endpoint({ maxAttempts: 3 }).exchange('a.b.c', 'access_token'));
    expect(err).toMatchObject({ code: 'upstream_unavailable', retryAfterSeconds: 2 });
    expect(seen).toHaveLength(3);
  });

  it('stops a hanging endpoint within the deadline', async () => {
    script = Array.from({ length: 10 }, () => () => {});
    const started = Date.now();
    const err = await caught(
      endpoint({ attemptTimeoutMs: 300, deadlineMs: 800 }).exchange('a.b.c', 'access_token'),
    );
    expect(err).toMatchObject({ code: 'upstream_unavailable' });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('does not wait for a Retry-After beyond the deadline', async () => {
    script = [json(503, {}, { 'Retry-After': '60' })];
    const started = Date.now();
    expect(await caught(endpoint({ deadlineMs: 2000 }).exchange('a.b.c', 'access_token'))).toMatchObject({
      retryAfterSeconds: 60,
    });
    expect(Date.now() - started).toBeLessThan(500);
    expect(seen).toHaveLength(1);
  });

  it('keeps the connection alive between exchanges', async () => {
    const ep = endpoint();
    await ep.exchange('a.b.c', 'access_token');
    const before = connections;
    for (let i = 0; i < 5; i++) await ep.exchange('a.b.c', 'access_token');
    expect(connections - before).toBe(0);
  });
});
