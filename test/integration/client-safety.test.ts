import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { BrokerClient, BrokerClientError } from '../../packages/client/src/index.js';
import { BIGQUERY, BILLING, post, REPORTING, type Stack, startStack } from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;

beforeAll(async () => {
  stack = await startStack();
  // The broker's skew is shorter than the client's (300 s by default), and it never refreshes ahead.
  broker = await stack.serveBroker('broker', {
    BROKER_REFRESH_SKEW_SECONDS: '60',
    BROKER_REFRESH_AHEAD_SECONDS: '0',
  });
});
afterAll(async () => stack?.close());

describe('the client asks for tokens that outlive its own refresh skew', () => {
  it('gets a fresh token instead of the nearly expired one the broker still holds', async () => {
    // The broker caches a token with 200 s left: more than its own skew (60 s), less than the client's (300 s).
    stack.google.setAccessTokenLifetime(200);
    const short = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: await stack.callerToken(BILLING) },
    );
    stack.google.setAccessTokenLifetime(3600);
    expect(short.status).toBe(200);
    expect(short.json['expires_in']).toBeLessThanOrEqual(200);
    const shortToken = short.json['access_token'];
    // A caller that asks nothing more still gets that token from the broker's cache.
    const again = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: await stack.callerToken(BILLING) },
    );
    expect(again.json['access_token']).toBe(shortToken);
    expect(again.headers.get('cache-status')).toMatch(/hit/);

    const sent: unknown[] = [];
    const client = new BrokerClient({
      url: broker.url,
      idToken: () => stack.callerToken(BILLING),
      fetch: (input, init) => {
        sent.push(JSON.parse(String(init?.body)));
        return fetch(input, init);
      },
    });
    const mintsBefore = stack.google.stats.tokensIssued;
    const t = await client.accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] });
    expect(sent).toEqual([{ serviceAccount: REPORTING, scopes: [BIGQUERY], minLifetimeSeconds: 300 }]);
    expect(t.token).not.toBe(shortToken);
    expect(t.cacheStatus).toMatch(/fwd=miss/);
    expect(t.expiresAt - Date.now()).toBeGreaterThan(3000_000);
    expect(stack.google.stats.tokensIssued).toBe(mintsBefore + 1);
    // And it keeps that token: the next call makes no request at all.
    expect(await client.accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] })).toBe(t);
    expect(sent).toHaveLength(1);
  });

  it("sends the larger of its skew and the request's minimum, capped at the broker's 3300 s", async () => {
    const bodies: Array<Record<string, unknown>> = [];
    const make = (refreshSkewSeconds: number) =>
      new BrokerClient({
        url: broker.url,
        refreshSkewSeconds,
        idToken: () => stack.callerToken(BILLING),
        fetch: (input, init) => {
          bodies.push(JSON.parse(String(init?.body)) as Record<string, unknown>);
          return fetch(input, init);
        },
      });
    await make(30).accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY], minLifetimeSeconds: 900 });
    await make(4000).accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] });
    expect(bodies.map((b) => b['minLifetimeSeconds'])).toEqual([900, 3300]);
  });
});

/** A server on another loopback port that records every request it gets. */
async function recorder(): Promise<{ server: Server; url: string; got: IncomingHttpHeaders[] }> {
  const got: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    got.push(req.headers);
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ access_token: 'ya29.attacker', expires_at: 9999999999 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}

/** A "broker" that redirects every request to `to` with `status`. */
async function redirector(to: string, status: number): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(status, { location: `${to}/token` });
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('the client never hands its credential to another server', () => {
  it('does not follow a redirect: the other origin receives nothing', async () => {
    const other = await recorder();
    const idToken = await stack.callerToken(BILLING);
    try {
      // The harm, shown with plain fetch: on a 307 it forwards X-Serverless-Authorization to the other origin.
      const leak = await redirector(other.url, 307);
      await fetch(`${leak.url}/token`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${idToken}`, 'X-Serverless-Authorization': `Bearer ${idToken}` },
        body: '{}',
      });
      leak.server.close();
      expect(other.got).toHaveLength(1);
      expect(other.got[0]?.['x-serverless-authorization']).toBe(`Bearer ${idToken}`);
      other.got.length = 0;

      for (const status of [301, 302, 303, 307, 308]) {
        const r = await redirector(other.url, status);
        const client = new BrokerClient({ url: r.url, idToken: async () => idToken });
        const err = await client
          .accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] })
          .catch((e: unknown) => e);
        r.server.close();
        expect(err).toBeInstanceOf(BrokerClientError);
        expect(err).toMatchObject({ code: 'invalid_response', status, retryable: false });
        expect((err as Error).message).not.toContain(idToken);
      }
      expect(other.got).toEqual([]);
    } finally {
      other.server.close();
    }
  });

  it('answers that are not the broker’s (HTML from a proxy, an unknown code) become invalid_response', async () => {
    const bodies: Array<[number, string, string]> = [
      [403, 'text/html', '<html><body>Error: Forbidden</body></html>'],
      [400, 'application/json', '{"error":"made_up","error_description":"x"}'],
      [200, 'application/json', '{"access_token":42}'],
    ];
    for (const [status, type, body] of bodies) {
      const server = createServer((req, res) => {
        req.resume();
        res.writeHead(status, { 'content-type': type }).end(body);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const client = new BrokerClient({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        idToken: async () => 'id',
      });
      const err = await client
        .accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] })
        .catch((e: unknown) => e);
      server.close();
      expect(err).toMatchObject({
        name: 'BrokerClientError',
        code: 'invalid_response',
        status,
        retryable: false,
      });
    }
  });

  it('refuses a plain-http broker URL except on loopback, before any request', async () => {
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const idToken = async () => 'never-sent';
    for (const url of [
      'http://broker.example.com',
      'http://10.0.0.8:8080',
      'http://127.0.0.1.nip.io',
      'http://[::2]/',
      'ftp://127.0.0.1/',
      'https://user:pw@broker.example.com',
    ]) {
      expect(() => new BrokerClient({ url, idToken, fetch: counting }), url).toThrow(TypeError);
    }
    expect(
      () => new BrokerClient({ endpoints: { token: 'http://token.example.com' }, idToken, fetch: counting }),
    ).toThrow(/endpoints\.token/);
    expect(calls).toBe(0);
    for (const url of [
      'https://broker.example.com',
      'http://127.0.0.1:1',
      'http://localhost:1',
      'http://[::1]:1',
    ])
      expect(() => new BrokerClient({ url, idToken, fetch: counting }), url).not.toThrow();
  });
});
