import { readFileSync } from 'node:fs';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from '../../infra/broker-process.js';
import {
  BIGQUERY,
  BILLING,
  CALENDAR,
  DRIVE,
  OPS,
  PLATFORM,
  REPORTING,
  type Stack,
  SYNC_JOB,
  startStack,
} from './support/stack.js';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 3000);
let stack: Stack;
let broker: BrokerProcess;
let callerTokens: string[];

beforeAll(async () => {
  stack = await startStack();
  // A small old-space cap: a leak would crash the broker within the run instead of hiding in a large heap.
  broker = await stack.startBroker('broker', { NODE_OPTIONS: '--max-old-space-size=64' });
  callerTokens = await Promise.all([BILLING, SYNC_JOB, PLATFORM, OPS].map((c) => stack.callerToken(c)));
});
afterAll(async () => stack?.close());

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

const value = fc.oneof(
  fc.constantFrom(
    REPORTING,
    'blue',
    'green',
    'alice@acme.com',
    '*@acme.com',
    'a@b.co,c@d.co',
    REPORTING.toUpperCase(),
    `${REPORTING}.`,
    'blue ',
    '\u212Aeys@acme.com',
  ),
  fc.constantFrom(
    BIGQUERY,
    CALENDAR,
    DRIVE,
    `${DRIVE} ${BIGQUERY}`,
    `${DRIVE},${BIGQUERY}`,
    'https://drive.googleapis.com/',
  ),
  fc.string({ maxLength: 40 }),
  fc.integer({ min: -5, max: 5000 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.constantFrom(BIGQUERY, CALENDAR, DRIVE, '', ' ', 'x,y'), { maxLength: 4 }),
  fc.jsonValue({ maxDepth: 2 }),
);
const key = fc.constantFrom(
  'serviceAccount',
  'tenant',
  'scopes',
  'subject',
  'audience',
  'minLifetimeSeconds',
  'all',
  '__proto__',
  'constructor',
  'scope',
);
const body = fc.oneof(
  { weight: 5, arbitrary: fc.dictionary(key, value, { maxKeys: 5 }).map((o) => JSON.stringify(o)) },
  {
    weight: 3,
    arbitrary: fc
      .record(
        {
          serviceAccount: fc.constantFrom(REPORTING, REPORTING.toUpperCase()),
          scopes: fc.subarray([BIGQUERY, CALENDAR, DRIVE], { minLength: 1 }),
          subject: fc.option(fc.constantFrom('alice@acme.com', 'bob@acme.com'), { nil: undefined }),
        },
        { requiredKeys: ['serviceAccount', 'scopes'] },
      )
      .map((o) => JSON.stringify(o)),
  },
  { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')) },
);
const request = fc.record({
  method: fc.constantFrom('POST', 'POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'),
  path: fc.constantFrom(
    '/token',
    '/token',
    '/token',
    '/jwt',
    '/idtoken',
    '/admin/purge',
    '/',
    '/token/',
    '/TOKEN',
    '/token?x=1',
    '/%2e%2e/admin/purge',
  ),
  contentType: fc.constantFrom(
    'application/json',
    'application/json',
    'application/json; charset=utf-8',
    'application/json; charset=latin1',
    'text/plain',
    'application/x-www-form-urlencoded',
    undefined,
  ),
  auth: fc.oneof(fc.constantFrom(0, 1, 2, 3), fc.constant(undefined), fc.string({ maxLength: 60 })),
  body,
  // How the body goes on the wire: as is, compressed, chunked, or swapped for a bomb or an oversized body.
  wire: fc.constantFrom(
    'plain',
    'plain',
    'plain',
    'plain',
    'gzip',
    'deflate',
    'br',
    'chunked',
    'gzip-chunked',
    'gzip-bomb',
    'br-bomb',
    'oversized-chunked',
  ),
});

type Wire =
  | 'plain'
  | 'gzip'
  | 'deflate'
  | 'br'
  | 'chunked'
  | 'gzip-chunked'
  | 'gzip-bomb'
  | 'br-bomb'
  | 'oversized-chunked';

// 8 MiB of zeros: a bomb inflates to 128 times the limit.
const bombs = { gzip: gzipSync(Buffer.alloc(8 << 20)), br: brotliCompressSync(Buffer.alloc(8 << 20)) };
const oversized = Buffer.alloc(1 << 20, 'x');

/** The body as sent, with the headers that describe it. */
function onTheWire(
  wire: Wire,
  text: string,
): { body: Buffer | ReadableStream<Uint8Array>; headers: Record<string, string> } {
  const raw = Buffer.from(text);
  const chunked = (b: Buffer) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < b.length; i += 4096) c.enqueue(b.subarray(i, i + 4096));
        c.close();
      },
    });
  switch (wire) {
    case 'plain':
      return { body: raw, headers: {} };
    case 'gzip':
      return { body: gzipSync(raw), headers: { 'content-encoding': 'gzip' } };
    case 'deflate':
      return { body: deflateSync(raw), headers: { 'content-encoding': 'deflate' } };
    case 'br':
      return { body: brotliCompressSync(raw), headers: { 'content-encoding': 'br' } };
    case 'chunked':
      return { body: chunked(raw), headers: {} };
    case 'gzip-chunked':
      return { body: chunked(gzipSync(raw)), headers: { 'content-encoding': 'gzip' } };
    case 'gzip-bomb':
      return { body: bombs.gzip, headers: { 'content-encoding': 'gzip' } };
    case 'br-bomb':
      return { body: bombs.br, headers: { 'content-encoding': 'br' } };
    case 'oversized-chunked':
      return { body: chunked(oversized), headers: {} };
  }
}

describe('fuzzing the request handler', () => {
  it(`answers ${RUNS} generated requests with JSON and no 5xx, with flat memory`, async () => {
    const samples = fc.sample(request, RUNS);
    // Warm up: first one request down every path that loads code lazily (the Secret Manager client on the
    // first mint from a secret, about 30 MB), then a third of the inputs (the heap grows to its working size).
    // Only then is memory measured, over the rest.
    const [billing, , platform, ops] = callerTokens;
    for (const [path, token, body] of [
      ['/token', billing, { serviceAccount: REPORTING, scopes: [BIGQUERY] }],
      ['/token', platform, { tenant: 'blue', scopes: [DRIVE] }],
      ['/jwt', platform, { tenant: 'blue', audience: 'https://drive.googleapis.com/' }],
      ['/idtoken', platform, { tenant: 'blue', audience: 'https://drive.googleapis.com/' }],
      ['/admin/purge', ops, { tenant: 'green' }],
    ] as const) {
      const r = await fetch(`${broker.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      expect(r.status, path).toBe(200);
    }
    const warm = samples.splice(0, Math.floor(RUNS / 3));
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        for (let j = i; j < warm.length; j += 16) await send(warm[j]!);
      }),
    );
    const before = rssMb(broker.child.pid!);
    const statuses = new Map<number, number>();
    const bad: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < samples.length) {
          const s = samples[next++]!;
          const r = await send(s);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          // Google refusing a generated request (a delegated subject it does not know) is a 502 by the contract.
          const refusedByGoogle = r.status === 502 && r.text.includes('"error":"upstream_rejected"');
          const tooLarge = s.method !== 'GET' && /bomb|oversized/.test(s.wire);
          if (
            (tooLarge && r.status !== 413) ||
            (r.status >= 500 && !refusedByGoogle) ||
            (r.status >= 400 && !/^application\/json/.test(r.contentType ?? ''))
          )
            bad.push(`${r.status} ${r.text.slice(0, 300)} ${JSON.stringify(s).slice(0, 200)}`);
        }
      }),
    );
    const after = rssMb(broker.child.pid!);
    console.log(
      `fuzz: ${RUNS} requests (${samples.length} measured), statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}, RSS ${before.toFixed(1)} → ${after.toFixed(1)} MB`,
    );
    expect(bad).toEqual([]);
    expect(after - before).toBeLessThan(40);
    expect(broker.child.exitCode).toBeNull();
  }, 120_000);
});

async function send(s: {
  method: string;
  path: string;
  contentType: string | undefined;
  auth: unknown;
  body: string;
  wire: Wire;
}) {
  const headers: Record<string, string> = {};
  if (s.contentType) headers['content-type'] = s.contentType;
  if (typeof s.auth === 'number') headers['authorization'] = `Bearer ${callerTokens[s.auth]}`;
  else if (typeof s.auth === 'string')
    headers['authorization'] = /^[\x20-\x7e]*$/.test(s.auth) ? s.auth : 'Bearer x';
  const wire = onTheWire(s.wire, s.body);
  const res = await fetch(`${broker.url}${s.path}`, {
    method: s.method,
    headers: { ...headers, ...(s.method === 'GET' ? {} : wire.headers) },
    ...(s.method === 'GET' ? {} : { body: wire.body, duplex: 'half' }),
  } as RequestInit);
  const text = await res.text();
  return { status: res.status, contentType: res.headers.get('content-type'), text };
}
