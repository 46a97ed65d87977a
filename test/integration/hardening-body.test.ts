import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, constants, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BodyRequest, readBody } from '../../functions/edge/body.js';
import type { BrokerProcess } from '../../infra/broker-process.js';
import { logLineOf, rawRequest, rssMb } from './support/raw-http.js';
import { BIGQUERY, BILLING, post, REPORTING, type Stack, startStack } from './support/stack.js';

const KIB = 1024;
const MIB = 1024 * KIB;
let stack: Stack;
let broker: BrokerProcess;
let url: string;

beforeAll(async () => {
  stack = await startStack();
  broker = await stack.startBroker('broker');
  url = `${broker.url}/token`;
});
afterAll(async () => stack?.close());

/** Yields `total` bytes of a JSON-looking body in `size`-byte chunks, made as they are sent. */
function* padding(total: number, size = 16 * KIB): Generator<Buffer> {
  yield Buffer.from('{"pad":"');
  const chunk = Buffer.alloc(size, 'x');
  for (let n = 0; n < total; n += size) yield chunk;
}

function* pieces(buf: Buffer, size = 16 * KIB): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

// 50 MiB of zeros: what each bomb inflates to.
const zeros = Buffer.alloc(50 * MIB);
const gzipBomb = gzipSync(zeros, { level: 9 });
const bombs = {
  gzip: gzipBomb,
  deflate: deflateSync(zeros, { level: 9 }),
  br: brotliCompressSync(zeros, { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } }),
};
// Eight gzip members back to back are one gzip body of 400 MiB: about 400 KB on the wire.
const bigGzip = Buffer.concat(Array.from({ length: 8 }, () => gzipBomb));

describe('the 64 KiB body limit holds whatever the headers say', () => {
  it('refuses gzip, deflate and br bombs, a chunked gzip body and a 20 MiB chunked body with 413, in bounded memory', async () => {
    // Warm the broker up with one ordinary request first: what it loads then is not the attack's doing.
    const billing = await stack.callerToken(BILLING);
    expect(
      (await post(url, { serviceAccount: REPORTING, scopes: [BIGQUERY] }, { token: billing })).status,
    ).toBe(200);
    // And with small refusals of each kind, so that the code that refuses is compiled before memory is measured.
    const small = Buffer.alloc(MIB);
    for (const [encoding, compress] of [
      ['gzip', gzipSync],
      ['deflate', deflateSync],
      ['br', brotliCompressSync],
    ] as const) {
      const r = await rawRequest(url, {
        headers: { 'Content-Type': 'application/json', 'Content-Encoding': encoding },
        body: [compress(small)],
      });
      expect(r.status).toBe(413);
    }
    expect(
      (await rawRequest(url, { headers: { 'Content-Type': 'application/json' }, body: padding(MIB) })).status,
    ).toBe(413);
    const pid = broker.child.pid!;
    const before = rssMb(pid);
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMb(pid));
    }, 10);
    const attacks: { name: string; headers: Record<string, string>; body: Iterable<Buffer> }[] = [
      ...Object.entries(bombs).map(([encoding, bomb]) => ({
        name: `${encoding} bomb of ${bomb.length} bytes with its Content-Length`,
        headers: {
          'Content-Type': 'application/json',
          'Content-Encoding': encoding,
          'Content-Length': String(bomb.length),
        },
        body: [bomb],
      })),
      {
        name: `chunked gzip body of ${bigGzip.length} bytes (400 MiB inflated)`,
        headers: { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
        body: pieces(bigGzip),
      },
      {
        name: '20 MiB chunked body',
        headers: { 'Content-Type': 'application/json' },
        body: padding(20 * MIB),
      },
      {
        name: '20 MiB chunked form body',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: padding(20 * MIB),
      },
    ];
    const seen: Record<
      string,
      { status: number; error: unknown; connection: unknown; requestSize: number; peakMb: number }
    > = {};
    try {
      for (const attack of attacks) {
        const r = await rawRequest(url, { headers: attack.headers, body: attack.body });
        const line = await logLineOf(broker.lines, r.headers['x-request-id']);
        const httpRequest = line?.['httpRequest'] as Record<string, unknown> | undefined;
        seen[attack.name] = {
          status: r.status,
          error: r.json['error'],
          connection: r.headers['connection'],
          requestSize: Number(httpRequest?.['requestSize']),
          peakMb: Math.round(peak),
        };
      }
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssMb(pid));
    console.log(`body limit: RSS ${before.toFixed(1)} → peak ${peak.toFixed(1)} MB; ${JSON.stringify(seen)}`);
    for (const [name, r] of Object.entries(seen)) {
      expect(r, name).toMatchObject({ status: 413, error: 'request_too_large' });
      // A body refused before its end was read closes the connection; a bomb was read whole (it is small).
      expect(r.connection, name).toBe(name.includes('bomb') ? 'keep-alive' : 'close');
      // The broker stopped at 64 KiB of body, give or take the one socket read that crossed it.
      expect(r.requestSize, name).toBeLessThanOrEqual(64 * KIB + 64 * KIB);
    }
    expect(peak - before).toBeLessThan(40);
    expect(broker.child.exitCode).toBeNull();
  }, 60_000);

  it('protects the example job, which is served from the same package, too', async () => {
    const job = await stack.startBroker('delegatedJob', {
      JOB_BROKER_URL: broker.url,
      JOB_SERVICE_ACCOUNT: REPORTING,
    });
    const before = rssMb(job.child.pid!);
    const r = await rawRequest(job.url, {
      headers: { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
      body: pieces(bigGzip),
    });
    const after = rssMb(job.child.pid!);
    expect(r.status).toBe(413);
    expect(after - before).toBeLessThan(40);
  });

  it('still reads compressed and chunked bodies within the limit, and counts the limit after inflating', async () => {
    const billing = await stack.callerToken(BILLING);
    const json = Buffer.from(JSON.stringify({ serviceAccount: REPORTING, scopes: [BIGQUERY] }));
    const auth = { Authorization: `Bearer ${billing}`, 'Content-Type': 'application/json' };
    for (const [encoding, body] of [
      ['gzip', gzipSync(json)],
      ['deflate', deflateSync(json)],
      ['br', brotliCompressSync(json)],
    ] as const) {
      const r = await rawRequest(url, { headers: { ...auth, 'Content-Encoding': encoding }, body: [body] });
      expect(r.status, encoding).toBe(200);
      expect(typeof r.json['access_token'], encoding).toBe('string');
    }
    const chunked = await rawRequest(url, { headers: auth, body: pieces(json, 7) });
    expect(chunked.status).toBe(200);
    // 64 KiB exactly passes the size check (and fails as a request: it is padding); one byte more is 413.
    const exact = (n: number) => {
      const head = '{"serviceAccount":"x","pad":"';
      return Buffer.from(`${head}${'x'.repeat(n - head.length - 2)}"}`);
    };
    const atLimit = await rawRequest(url, {
      headers: { ...auth, 'Content-Encoding': 'gzip' },
      body: [gzipSync(exact(64 * KIB))],
    });
    expect(atLimit.status).toBe(400);
    const over = await rawRequest(url, {
      headers: { ...auth, 'Content-Encoding': 'gzip' },
      body: [gzipSync(exact(64 * KIB + 1))],
    });
    expect(over.status).toBe(413);
    // zstd too, though Node 22 could inflate it: its window can take 128 MiB.
    for (const encoding of ['compress', 'zstd', 'gzip, br']) {
      const unknown = await rawRequest(url, {
        headers: { ...auth, 'Content-Encoding': encoding },
        body: [json],
      });
      expect(unknown.status, encoding).toBe(415);
    }
    const corrupt = await rawRequest(url, {
      headers: { ...auth, 'Content-Encoding': 'gzip' },
      body: [Buffer.from('not gzip at all')],
    });
    expect(corrupt.status).toBe(400);
    expect(corrupt.json['error']).toBe('invalid_request');
  });
});

describe('what the edge hands on', () => {
  it('a form body as its decoded bytes only: nothing is parsed before a door reads it', async () => {
    const seen: { body?: unknown; raw?: string | undefined; error?: string }[] = [];
    const server = createServer((req: BodyRequest, res) => {
      readBody(req, (error) => {
        seen.push({
          body: req.body,
          raw: req.rawBody?.toString('utf8'),
          ...(error ? { error: error.code } : {}),
        });
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const at = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      const form =
        'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=a&audience=b&scope=x+y&__proto__=p';
      const type = { 'Content-Type': 'application/x-www-form-urlencoded' };
      await rawRequest(at, { headers: type, body: [Buffer.from(form)] });
      await rawRequest(at, {
        headers: { ...type, 'Content-Encoding': 'gzip' },
        body: pieces(gzipSync(form), 5),
      });
      await rawRequest(at, { headers: type, body: padding(MIB) });
      for (const s of seen.slice(0, 2)) {
        expect(s.body).toBeUndefined();
        expect(s.raw).toBe(form);
      }
      expect(seen[2]).toEqual({ body: undefined, raw: undefined, error: 'request_too_large' });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
