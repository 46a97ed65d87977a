/**
 * What a caller with no credential, or with one it shapes freely, can make
 * the broker spend before it is authenticated: time linear in what it sends
 * and capped, and memory bounded however many ways it spells one header
 * (docs/contract.md, "Limits"). In process: the broker's event loop is this
 * test's, so a frozen loop shows as the time a concurrent request waits.
 */
import { Agent, request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessBroker, serveInProcess } from '../../infra/in-process-broker.js';
import { MAX_CREDENTIAL_BYTES } from '../../shared/adapters/caller-auth.js';
import { rssMb } from './support/raw-http.js';
import { BIGQUERY, BILLING, post, REPORTING, type Stack, SYNC_JOB, startStack } from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;
let billing: string;

beforeAll(async () => {
  stack = await startStack();
  broker = await serveInProcess(stack.env);
  billing = await stack.callerToken(BILLING);
  // Warm: the valid request below is a cache hit, so what it waits for is the attack alone.
  const first = await post(
    `${broker.url}/token`,
    { serviceAccount: REPORTING, scopes: [BIGQUERY] },
    { token: billing },
  );
  expect(first.status).toBe(200);
});
afterAll(async () => {
  await broker?.stop();
  await stack?.close();
});

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

/** One request over node:http; resolves with the status and the body text. */
function send(
  path: string,
  headers: Record<string, string>,
  body: Buffer | string = '',
  port = Number(new URL(broker.url).port),
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Milliseconds and CPU milliseconds (this process: the broker's) that `fn` took. */
async function measure<T>(fn: () => Promise<T>): Promise<{ result: T; ms: number; cpuMs: number }> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await fn();
  const used = process.cpuUsage(cpu);
  return { result, ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000 };
}

describe('a 100-byte form body that expands to 32,768 parameters', () => {
  // "a&" 32,768 times: 64 KiB inflated, 100-odd bytes on the wire; it took the broker 10 s of CPU per request.
  const bomb = gzipSync(Buffer.from('a&'.repeat(32_768)));
  const form = { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Encoding': 'gzip' };

  it('is answered at once on every path, and a concurrent valid request waits less than a second', async () => {
    expect(bomb.length).toBeLessThan(200);
    for (const [path, status] of [
      ['/sts', 400],
      ['/token', 415],
      ['/nope', 404],
    ] as const) {
      const valid = measure(() =>
        post(`${broker.url}/token`, { serviceAccount: REPORTING, scopes: [BIGQUERY] }, { token: billing }),
      );
      const attack = await measure(() => send(path, form, bomb));
      const served = await valid;
      expect(attack.result.status, path).toBe(status);
      expect(served.result.status).toBe(200);
      expect(served.ms, `a valid request beside ${path}`).toBeLessThan(1000);
      expect(attack.ms, path).toBeLessThan(1000);
      expect(attack.cpuMs, path).toBeLessThan(500);
      console.log(
        `form bomb at ${path}: answered ${attack.result.status} in ${attack.ms.toFixed(1)} ms (${attack.cpuMs.toFixed(1)} ms CPU); a valid request beside it took ${served.ms.toFixed(1)} ms`,
      );
    }
    const sts = await send('/sts', form, bomb);
    expect(JSON.parse(sts.text)).toMatchObject({
      error: 'invalid_request',
      error_description: expect.stringContaining('more than 100 parameters'),
    });
  });
});

describe('JSON shaped to cost: deep nesting and a huge scope list', () => {
  it('costs milliseconds, with or without a credential', async () => {
    const json = { 'Content-Type': 'application/json' };
    const deep = `${'['.repeat(32_000)}${']'.repeat(32_000)}`;
    const scopes = JSON.stringify({
      serviceAccount: REPORTING,
      scopes: Array.from({ length: 4000 }, (_, i) => `s${i}`),
    });
    expect(scopes.length).toBeLessThan(64 * 1024);
    for (const [name, body, headers, status] of [
      ['32,000 nested arrays, no credential', deep, json, 401],
      ['32,000 nested arrays, a valid caller', deep, { ...json, Authorization: `Bearer ${billing}` }, 400],
      ['4,000 scopes, no credential', scopes, json, 401],
      ['4,000 scopes, a valid caller', scopes, { ...json, Authorization: `Bearer ${billing}` }, 400],
    ] as const) {
      const r = await measure(() => send('/token', headers, body));
      expect(r.result.status, name).toBe(status);
      expect(r.ms, name).toBeLessThan(250);
    }
  });
});

describe('the verified-caller cache', () => {
  it('refuses an Authorization header over the size limit with 401 before any work', async () => {
    // The padding sits inside the value: HTTP parsers trim a header's leading and trailing spaces.
    const huge = `Bearer${' '.repeat(10_000)}${billing}`;
    const r = await measure(() =>
      send('/token', { 'Content-Type': 'application/json', Authorization: huge }, '{}'),
    );
    expect(r.result.status).toBe(401);
    expect(JSON.parse(r.result.text)['error_description']).toContain(`longer than ${MAX_CREDENTIAL_BYTES}`);
    expect(r.ms).toBeLessThan(100);
  });

  it('holds one entry per token however the header spells it: 10,000 spellings and 4,000 oversized headers grow a broker process by less than 60 MB', async () => {
    // A process of its own: its RSS is the broker's alone, not this test's client too.
    const process = await stack.startBroker('broker');
    const pid = process.child.pid as number;
    const at = new URL(process.url);
    // A caller with a valid token and no grant for this request: every answer is a 403 after verification.
    const token = await stack.callerToken(SYNC_JOB);
    const spellings: string[] = [];
    for (let spaces = 1; spellings.length < 10_000; spaces++) {
      for (let mask = 0; mask < 64 && spellings.length < 10_000; mask++) {
        const scheme = [...'bearer'].map((c, i) => (mask & (1 << i) ? c.toUpperCase() : c)).join('');
        spellings.push(`${scheme}${' '.repeat(spaces)}${token}`);
      }
    }
    // The review's attack: about 15 KB each, under Node's 16 KiB header limit, over ours.
    const oversized = Array.from(
      { length: 4000 },
      (_, i) => `Bearer${' '.repeat(12_000 + (i % 3000))}${token}`,
    );
    expect(new Set(spellings).size).toBe(10_000);
    expect(Math.max(...spellings.map((s) => s.length))).toBeLessThanOrEqual(MAX_CREDENTIAL_BYTES);
    const body = JSON.stringify({ serviceAccount: REPORTING, scopes: [BIGQUERY] });
    const json = { 'Content-Type': 'application/json' };
    const at1 = (authorization: string) =>
      send('/token', { ...json, Authorization: authorization }, body, Number(at.port));
    // The same number of requests with one spelling first: what thousands of requests cost (compiled code,
    // pooled buffers, the heap's growth to its working size) is then not counted as the spellings' cost.
    for (let i = 0; i < 6_000; i += 16) {
      const same = Array.from({ length: 16 }, () => at1(spellings[0] as string));
      for (const r of await Promise.all(same)) expect(r.status).toBe(403);
    }
    const before = rssMb(pid);
    const statuses = new Map<number, number>();
    const started = performance.now();
    const all = [...spellings, ...oversized];
    for (let i = 0; i < all.length; i += 16) {
      for (const r of await Promise.all(all.slice(i, i + 16).map(at1)))
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    const ms = performance.now() - started;
    const grown = rssMb(pid) - before;
    console.log(
      `10,000 spellings of one caller token and 4,000 oversized headers: ${ms.toFixed(0)} ms, broker RSS +${grown.toFixed(1)} MB`,
    );
    expect(Object.fromEntries(statuses)).toEqual({ 401: 4000, 403: 10_000 });
    // Keyed by the header, the cache held every spelling: 30 MB of 15 KB keys from the oversized ones alone.
    expect(grown).toBeLessThan(60);
    await process.stop();
  }, 120_000);
});
