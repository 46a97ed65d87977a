/**
 * `npm run bench`: the cache figures, measured on loopback against the
 * local stack (Google and Secret Manager stand-ins, a real redis-server
 * behind the Upstash REST stand-in, broker processes under the real
 * functions framework), with autocannon as the load tool.
 *
 *   token from L1   one broker, one token, all hits in process
 *   token from L2   a broker whose L1 holds one entry, asked round-robin for 4 tokens: every answer comes from Upstash
 *   bare L2 GET     one @upstash/redis GET round trip to the same front, the floor for an L2 hit
 *   mints           calls to the token endpoint for one missing token, 300 concurrent requests across 3 instances
 *
 * Writes .tmp/bench/cache.json and .tmp/bench/cache.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Redis } from '@upstash/redis';
import autocannon from 'autocannon';
import { ROOT } from '../broker-process.js';
import { BIGQUERY, BILLING, DRIVE, PLATFORM, REPORTING, startStack } from '../local-stack.js';
import { requireRedisServer, startRedisServer } from '../redis/redis-server.js';
import { startUpstashStandIn } from '../upstash/server.js';

const DURATION = Number(process.env['BENCH_SECONDS'] ?? 5);
const CONNECTIONS = 10;
const UPSTASH_TOKEN = 'bench-token';

interface Row {
  figure: string;
  value: string;
  reference: string;
  note: string;
}

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function load(url: string, token: string, bodies: unknown[]): Promise<autocannon.Result> {
  let i = 0;
  return autocannon({
    url,
    connections: CONNECTIONS,
    duration: DURATION,
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify(bodies[i++ % bodies.length]) }) }],
  });
}

async function main(): Promise<void> {
  if (requireRedisServer() === undefined)
    throw new Error('redis-server is required for the cache bench (apt-get install -y redis-server)');
  const redis = await startRedisServer();
  const upstash = await startUpstashStandIn({ redisUrl: redis.url, token: UPSTASH_TOKEN });
  const stack = await startStack();
  const shared = {
    UPSTASH_REDIS_REST_URL: upstash.url,
    UPSTASH_REDIS_REST_TOKEN: UPSTASH_TOKEN,
    BROKER_CACHE_KEY: Buffer.alloc(32, 7).toString('base64'),
  };
  try {
    const rows: Row[] = [];
    const billing = await stack.callerToken(BILLING);
    const platform = await stack.callerToken(PLATFORM);

    // Mints: 300 concurrent requests for one missing token across 3 instances.
    const three = await Promise.all([0, 1, 2].map(() => stack.startBroker('broker', shared)));
    const before = stack.google.stats.tokensIssued;
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        fetch(`${three[i % 3]!.url}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${billing}` },
          body: JSON.stringify(body),
        }).then((r) => r.status),
      ),
    );
    const mints = stack.google.stats.tokensIssued - before;
    rows.push({
      figure: 'mints for 300 concurrent requests, 3 instances',
      value: String(mints),
      reference: '1',
      note: `${answers.filter((s) => s === 200).length}/300 answered 200`,
    });

    // L1: one broker, one token.
    const l1 = await load(`${three[0]!.url}/token`, billing, [body]);
    rows.push({
      figure: 'token from L1',
      value: `${Math.round(l1.requests.average)} req/s, p50 ${l1.latency.p50} ms, p99 ${l1.latency.p99} ms`,
      reference: '',
      note: `${CONNECTIONS} connections, ${DURATION} s, ${l1.non2xx} non-2xx`,
    });

    // L2: L1 holds one entry, four tokens asked round-robin.
    const l2Broker = await stack.startBroker('broker', { ...shared, BROKER_L1_MAX_ENTRIES: '1' });
    const tenants = [
      { tenant: 'blue', scopes: [DRIVE] },
      { tenant: 'green', scopes: [DRIVE] },
      { tenant: 'blue', audience: 'https://drive.googleapis.com/' },
      { tenant: 'green', audience: 'https://drive.googleapis.com/' },
    ];
    const paths = (b: (typeof tenants)[number]) => ('audience' in b ? '/jwt' : '/token');
    for (const b of tenants) {
      await fetch(`${l2Broker.url}${paths(b)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${platform}` },
        body: JSON.stringify(b),
      });
    }
    const l2 = await load(
      `${l2Broker.url}/token`,
      platform,
      tenants.filter((b) => !('audience' in b)),
    );
    // Bare floor: one @upstash/redis GET round trip to the same front, sequentially.
    const client = new Redis({ url: upstash.url, token: UPSTASH_TOKEN, enableAutoPipelining: false });
    await client.set('bench:key', 'x'.repeat(300));
    const rtts: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t = performance.now();
      await client.get('bench:key');
      rtts.push(performance.now() - t);
    }
    const bareP50 = pct(rtts, 50);
    rows.push({
      figure: 'token from L2 (Upstash front over redis-server)',
      value: `${Math.round(l2.requests.average)} req/s, p50 ${l2.latency.p50} ms, p99 ${l2.latency.p99} ms`,
      reference: `bare @upstash/redis GET p50 ${bareP50.toFixed(2)} ms, p99 ${pct(rtts, 99).toFixed(2)} ms`,
      note: `L1 of 1 entry, 2 tokens round-robin; ${l2.non2xx} non-2xx`,
    });

    const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
    const md = [
      `Machine: ${machine}`,
      '',
      '| figure | value | reference | note |',
      '|---|---|---|---|',
      ...rows.map((r) => `| ${r.figure} | ${r.value} | ${r.reference} | ${r.note} |`),
    ].join('\n');
    console.log(`\n${md}\n`);
    const dir = join(ROOT, '.tmp', 'bench');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cache.json'), `${JSON.stringify({ machine, rows }, null, 2)}\n`);
    writeFileSync(join(dir, 'cache.md'), `${md}\n`);
  } finally {
    await stack.close();
    await upstash.close();
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
