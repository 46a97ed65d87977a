/**
 * One keyless account serving every tenant, each token bounded to the
 * tenant's own prefix by a Credential Access Boundary (docs/contract.md,
 * "Tenants on shared accounts"). Brokers run in this process against the
 * Google stand-in's IAM, STS and Cloud Storage, which enforces boundaries;
 * the tokens are used by the real @google-cloud/storage client through
 * BrokerAuthClient.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { type LocalSharedCache, startLocalSharedCache } from '../../infra/local-shared-cache.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';
import { BrokerAuthClient } from '../../packages/client/src/auth-client.js';
import { BrokerClient } from '../../packages/client/src/index.js';
import { BROKER_IDENTITY, PLATFORM, post, type Stack, startStack } from './support/stack.js';

const SHARED = 'tenants@acme.iam.gserviceaccount.com';
const BUCKET = 'acme-tenants';
const RW = 'https://www.googleapis.com/auth/devstorage.read_write';
const SUPPORT = 'support@acme.iam.gserviceaccount.com';

const boundaryGrant = {
  callers: [PLATFORM],
  tenants: ['*'],
  scopes: [RW],
  accessBoundary: [
    {
      resource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
      permissions: ['inRole:roles/storage.objectViewer'],
      condition: `resource.name.startsWith('projects/_/buckets/${BUCKET}/objects/{tenant}/')`,
    },
  ],
};

function policy(): Record<string, unknown> {
  return {
    serviceAccounts: [{ email: SHARED, keyless: true, tenants: ['*'] }],
    grants: [
      boundaryGrant,
      // A support desk acts as a user of the tenant's Workspace: the boundary names the subject's own folder.
      {
        callers: [SUPPORT],
        tenants: ['*'],
        scopes: [RW],
        subjects: ['*@acme.com'],
        accessBoundary: [
          {
            resource: `//storage.googleapis.com/projects/_/buckets/${BUCKET}`,
            permissions: ['inRole:roles/storage.objectViewer'],
            condition: {
              expression: `resource.name.startsWith('projects/_/buckets/${BUCKET}/objects/{tenant}/{subject}/')`,
              title: 'own folder',
            },
          },
        ],
      },
    ],
  };
}

let stack: Stack;
let broker: InProcessBroker;

beforeAll(async () => {
  stack = await startStack({ policy: policy() });
  const { google } = stack;
  google.registerKeylessAccount(SHARED);
  google.grantTokenCreator(SHARED, BROKER_IDENTITY);
  google.allowDelegation(SHARED, '*');
  google.addUser('alice@acme.com');
  google.addUser("o'brien@acme.com");
  google.storage.grantBucket(BUCKET, `serviceAccount:${SHARED}`, 'roles/storage.objectAdmin');
  for (const tenant of ['blue', 'green']) {
    google.storage.putObject(BUCKET, `${tenant}/report.csv`, `${tenant} numbers\n`, 'text/csv');
  }
  google.storage.putObject(BUCKET, 'blue/alice@acme.com/notes.txt', 'alice only\n');
  broker = await stack.serveBroker('broker');
}, 60_000);
afterAll(async () => stack?.close());

/** A Storage 7 client whose every request carries the broker's token for `tenant`. */
async function storageFor(tenant: string) {
  const client = new BrokerClient({ url: broker.url, idToken: () => stack.callerToken(PLATFORM) });
  const authClient = new BrokerAuthClient(client, { tenant, scopes: [RW] });
  const { Storage } = await import('storage7');
  return new Storage({
    projectId: 'acme',
    apiEndpoint: stack.google.storage.url,
    useAuthWithCustomEndpoint: true,
    retryOptions: { autoRetry: false },
    authClient: authClient as never,
  });
}

/** Every access token a caller of this test was handed. */
const served: string[] = [];
async function ask(tenant: string, extra: Record<string, unknown> = {}, caller = PLATFORM) {
  const r = await post(
    `${broker.url}/token`,
    { tenant, scopes: [RW], ...extra },
    { token: await stack.callerToken(caller) },
  );
  if (typeof r.json['access_token'] === 'string') served.push(r.json['access_token']);
  return r;
}

describe('a tenant token bounded to its own data', () => {
  it("reads its own prefix through the real Storage client and gets 403 on another tenant's", async () => {
    const blue = (await storageFor('blue')).bucket(BUCKET);
    const [own] = await blue.file('blue/report.csv').download();
    expect(own.toString()).toBe('blue numbers\n');
    const refused = await blue
      .file('green/report.csv')
      .download()
      .then(
        () => undefined,
        (e: { code?: number }) => e.code,
      );
    expect(refused).toBe(403);
    // What reached Storage: one downscoped token for both reads, never the account's own.
    const requests = stack.google.storage.requests.filter((r) => r.bucket === BUCKET);
    expect(requests.map((r) => [r.object, r.status, r.downscoped])).toEqual([
      ['blue/report.csv', 200, true],
      ['green/report.csv', 403, true],
    ]);
    served.push(...requests.map((r) => String(r.token)));
  });

  it('is minted once per tenant: a second request is a hit with no STS exchange, and expires with its source', async () => {
    const exchanges = stack.google.sts.stats.exchanges;
    const first = await ask('green');
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-status')).toBe('broker; fwd=miss');
    const again = await ask('green');
    expect(again.headers.get('cache-status')).toBe('broker; hit');
    expect(again.json['access_token']).toBe(first.json['access_token']);
    expect(stack.google.sts.stats.exchanges - exchanges).toBe(1);
    const issued = stack.google.sts.issued.find((t) => t.token === first.json['access_token']);
    expect(issued).toMatchObject({ email: SHARED });
    expect(first.json['expires_at']).toBe(issued?.exp);
  });

  it('writes the boundary and the tenant in the audit line', async () => {
    const r = await ask('purple');
    const line = broker.lines.find((l) => l.includes(String(r.headers.get('x-request-id'))));
    const audit = JSON.parse(line as string)['audit'] as Record<string, unknown>;
    expect(audit).toMatchObject({ tenant: 'purple', account: SHARED, decision: 'allow', grant: 0 });
    expect(audit['boundary']).toMatch(/^[\w-]{22}$/);
    const other = await ask('teal');
    const otherLine = broker.lines.find((l) => l.includes(String(other.headers.get('x-request-id'))));
    expect((JSON.parse(otherLine as string)['audit'] as Record<string, unknown>)['boundary']).not.toBe(
      audit['boundary'],
    );
  });

  it('expands {subject} for a delegated token, and refuses a subject that is not plain', async () => {
    const ok = await ask('blue', { subject: 'alice@acme.com' }, SUPPORT);
    expect(ok.status).toBe(200);
    const info = stack.google.sts.issued.find((t) => t.token === ok.json['access_token']);
    expect(JSON.stringify(info?.boundary)).toContain('objects/blue/alice@acme.com/');
    const quoted = await ask('blue', { subject: "o'brien@acme.com" }, SUPPORT);
    expect(quoted.status).toBe(400);
    expect(quoted.json['error_description']).toContain('plain email');
  });

  it('never hands the account its own token to a caller', () => {
    const sources = new Set(stack.google.sts.issued.map((t) => t.sourceToken));
    const downscoped = new Set(stack.google.sts.issued.map((t) => t.token));
    expect(served.length).toBeGreaterThan(4);
    for (const token of served) {
      expect(sources.has(token)).toBe(false);
      expect(downscoped.has(token)).toBe(true);
    }
  });
});

describe('STS failures', () => {
  it('maps a refused boundary to 502 with STS’s code, and names the grant in the log line only', async () => {
    stack.google.sts.injectFault(
      { kind: 'status', status: 400, error: 'invalid_request', description: 'bad rule' },
      1,
    );
    const r = await ask('amber');
    expect(r.status).toBe(502);
    expect(r.json).toMatchObject({ error: 'upstream_rejected', upstream_error: 'invalid_request' });
    expect(JSON.stringify(r.json)).not.toContain('buckets');
    const line = JSON.parse(
      broker.lines.find((l) => l.includes(String(r.headers.get('x-request-id')))) as string,
    );
    expect(line.audit).toMatchObject({ grant: 0, upstreamError: 'invalid_request' });
    expect(line.audit.remedy).toContain('accessBoundary');
  });

  it('mints a new source token once when STS refuses the one in hand, then serves', async () => {
    const first = await ask('coral');
    const source = stack.google.sts.issued.find((t) => t.token === first.json['access_token'])?.sourceToken;
    expect(source).toBeDefined();
    stack.google.revokeAccessToken(source as string);
    const mints = stack.google.stats.iamRequests.generateAccessToken;
    const r = await ask('cyan');
    expect(r.status).toBe(200);
    expect(stack.google.stats.iamRequests.generateAccessToken - mints).toBe(1);
    const used = stack.google.sts.issued.find((t) => t.token === r.json['access_token'])?.sourceToken;
    expect(used).not.toBe(source);
  });

  it('answers 503 with Retry-After when STS stays unavailable, and serves nothing', async () => {
    stack.google.sts.injectFault({ kind: 'status', status: 503 }, 20);
    const r = await ask('olive');
    stack.google.sts.reset();
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(r.json['access_token']).toBeUndefined();
  });
});

describe.runIf(redisAvailable || process.env['CI'] === 'true')('500 tenants on one account', () => {
  let cache: LocalSharedCache;
  let instances: InProcessBroker[];
  beforeAll(async () => {
    cache = await startLocalSharedCache();
    instances = await Promise.all(
      // A generous cache budget: this counts mints, and on a loaded machine a slow lock call would count as
      // the cache being down (then an instance mints on its own), which is about speed, not single-flight.
      [0, 1, 2].map(() => stack.serveBroker('broker', { ...cache.env, BROKER_CACHE_TIMEOUT_MS: '5000' })),
    );
  });
  afterAll(async () => cache?.close());

  it('first requests at once on 3 instances: one source mint, one STS exchange per tenant', async () => {
    const tenants = Array.from({ length: 500 }, (_, i) => `t${i}`);
    const mints = stack.google.stats.iamRequests.generateAccessToken;
    const exchanges = stack.google.sts.stats.exchanges;
    const token = await stack.callerToken(PLATFORM);
    const started = performance.now();
    // Every tenant asked on the three instances at once, 300 requests in flight at a time (the brokers and
    // this test share one event loop: 1,500 sockets at once would measure the loop, not the broker).
    const asks = instances.flatMap((b) => tenants.map((tenant) => ({ url: `${b.url}/token`, tenant })));
    const order = tenants.flatMap((_, t) => [0, 1, 2].map((i) => i * 500 + t));
    const answers: Awaited<ReturnType<typeof post>>[] = new Array(asks.length);
    for (let i = 0; i < order.length; i += 300) {
      await Promise.all(
        order.slice(i, i + 300).map(async (k) => {
          const a = asks[k]!;
          answers[k] = await post(a.url, { tenant: a.tenant, scopes: [RW] }, { token });
        }),
      );
    }
    const ms = performance.now() - started;
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    const byTenant = new Map<string, Set<unknown>>();
    answers.forEach((a, i) => {
      const tenant = tenants[i % 500] as string;
      byTenant.set(tenant, (byTenant.get(tenant) ?? new Set()).add(a.json['access_token']));
    });
    // Every instance served a tenant the same token, and no two tenants share one.
    expect([...byTenant.values()].every((s) => s.size === 1)).toBe(true);
    expect(new Set([...byTenant.values()].map((s) => [...s][0])).size).toBe(500);
    console.log(
      `500 tenants × 3 instances: ${stack.google.stats.iamRequests.generateAccessToken - mints} source mint(s), ${stack.google.sts.stats.exchanges - exchanges} STS exchanges, ${ms.toFixed(0)} ms`,
    );
    expect(stack.google.stats.iamRequests.generateAccessToken - mints).toBe(1);
    expect(stack.google.sts.stats.exchanges - exchanges).toBe(500);
  }, 120_000);
});
