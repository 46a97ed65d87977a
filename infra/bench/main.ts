/**
 * `npm run bench`: the broker beside its references, in one run, on
 * loopback against the local stack (Google and Secret Manager stand-ins, a
 * real redis-server behind the Upstash REST stand-in, processes under the
 * real functions framework), with autocannon as the load tool.
 *
 *   signing         JWT assertions per second on every core: raw node:crypto (the limit), the broker (jose), google-auth-library
 *   token from L1   one broker, one token, all hits in process; beside a bare functions-framework handler
 *   token from L2   a broker whose L1 holds one entry, asked round-robin: every answer comes from Upstash; beside one bare GET
 *   mints           calls to the token endpoint for one missing token, 300 concurrent requests across 3 instances
 *   cold start      spawn → first token served from L2; beside spawn → first answer of the bare handler
 *   memory          RSS of a broker idle and after the L1 load
 *   load times      import time of each heavy module in a fresh process
 *
 * Writes .tmp/bench/bench.json and .tmp/bench/bench.md. BENCH_SECONDS, BENCH_SIGN_MS and
 * BENCH_IMPORT_RUNS shorten it (the test suite runs a one-second version as a smoke test).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Redis } from '@upstash/redis';
import autocannon from 'autocannon';
import { ROOT, startBrokerProcess } from '../broker-process.js';
import { BIGQUERY, BILLING, DRIVE, PLATFORM, REPORTING, startStack } from '../local-stack.js';
import { requireRedisServer } from '../redis/redis-server.js';
import { startLocalSharedCache } from '../shared-cache.js';
import { benchKey, signRate } from './sign.js';
import { coldStart, importTimes, rssMb } from './startup.js';

const DURATION = Number(process.env['BENCH_SECONDS'] ?? 5);
const CONNECTIONS = 10;
const IMPORT_RUNS = Number(process.env['BENCH_IMPORT_RUNS'] ?? 3);

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
  const cache = await startLocalSharedCache();
  const { upstash } = cache;
  const stack = await startStack();
  const shared = cache.env;
  try {
    const rows: Row[] = [];
    const ratio = (a: number, b: number) => `${Math.round((a / b) * 100)} %`;

    // Signing, on every core.
    const pem = benchKey();
    const signMs = Number(process.env['BENCH_SIGN_MS'] ?? 3000);
    const raw = await signRate('raw', pem, signMs);
    const ours = await signRate('broker', pem, signMs);
    const gal = await signRate('gal', pem, signMs);
    rows.push({
      figure: 'JWT assertions signed per second (all cores)',
      value: `${Math.round(ours)}/s`,
      reference: `raw node:crypto ${Math.round(raw)}/s; google-auth-library ${Math.round(gal)}/s`,
      note: `${ratio(ours, raw)} of raw (goal ≥ 90 %); ${(ours / gal).toFixed(1)}× google-auth-library`,
    });
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

    // L1: one broker, one token; beside the bare handler. The other brokers stop first, so both runs have the same machine.
    await Promise.all(three.slice(1).map((b) => b.stop()));
    const idleRss = rssMb(three[0]!.child.pid!);
    const l1 = await load(`${three[0]!.url}/token`, billing, [body]);
    const loadedRss = rssMb(three[0]!.child.pid!);
    const bare = await startBrokerProcess({
      target: 'bare',
      env: {},
      source: `${ROOT}dist/infra/bench/bare.js`,
    });
    const bareRun = await load(`${bare.url}/`, billing, [body]);
    await bare.stop();
    rows.push({
      figure: 'token from L1',
      value: `${Math.round(l1.requests.average)} req/s, p50 ${l1.latency.p50} ms, p99 ${l1.latency.p99} ms`,
      reference: `bare handler ${Math.round(bareRun.requests.average)} req/s, p50 ${bareRun.latency.p50} ms, p99 ${bareRun.latency.p99} ms`,
      note: `${ratio(l1.requests.average, bareRun.requests.average)} of its req/s (goal ≥ 80 %), p99 ${(l1.latency.p99 / Math.max(1, bareRun.latency.p99)).toFixed(2)}× (goal ≤ 1.5×); ${l1.non2xx} non-2xx`,
    });
    rows.push({
      figure: 'RSS of one broker',
      value: `idle ${idleRss.toFixed(0)} MB, after the L1 load ${loadedRss.toFixed(0)} MB`,
      reference: '',
      note: 'goal ≤ 150 MB',
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
    const client = new Redis({
      url: upstash.url,
      token: shared['UPSTASH_REDIS_REST_TOKEN']!,
      enableAutoPipelining: false,
    });
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

    // Cold start: spawn → first token from L2 (it is in Redis already), beside spawn → first bare answer.
    const coldBroker = await coldStart({
      source: `${ROOT}dist/functions/index.js`,
      target: 'broker',
      env: { ...stack.env, ...shared },
      request: (u) =>
        fetch(`${u}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${billing}` },
          body: JSON.stringify(body),
        }),
    });
    const coldBare = await coldStart({
      source: `${ROOT}dist/infra/bench/bare.js`,
      target: 'bare',
      env: {},
      request: (u) => fetch(u),
    });
    rows.push({
      figure: 'cold start: spawn → first token served from L2',
      value: `${coldBroker.ms.toFixed(0)} ms`,
      reference: `spawn → first answer of the bare handler ${coldBare.ms.toFixed(0)} ms`,
      note: `${(coldBroker.ms / coldBare.ms).toFixed(2)}× (goal ≤ 1.3×, ≤ 400 ms)`,
    });
    const loads = importTimes(
      [
        '@google-cloud/functions-framework',
        'jose',
        '@upstash/redis',
        '@upstash/ratelimit',
        '@google-cloud/secret-manager',
        'google-auth-library',
        `${ROOT}dist/functions/index.js`,
      ],
      IMPORT_RUNS,
    );
    rows.push({
      figure: `module load times (fresh process, median of ${IMPORT_RUNS})`,
      value: loads.map((l) => `${l.module.replace(ROOT, '')} ${l.ms.toFixed(0)} ms`).join('; '),
      reference: '',
      note: 'Secret Manager and google-auth-library are imported lazily, off the cache-hit path',
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
    writeFileSync(join(dir, 'bench.json'), `${JSON.stringify({ machine, rows }, null, 2)}\n`);
    writeFileSync(join(dir, 'bench.md'), `${md}\n`);
  } finally {
    await stack.close();
    await cache.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
