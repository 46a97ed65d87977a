import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startBrokerProcess } from '../../infra/broker-process.js';
import { startLocalSharedCache } from '../../infra/local-shared-cache.js';
import { redisAvailable } from '../../infra/redis/redis-server.js';
import { BIGQUERY, BILLING, OPS, post, REPORTING, type Stack, startStack } from './support/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => stack?.close());

describe('each target registered from one source', () => {
  it('serves token at /', async () => {
    const token = await stack.startBroker('token');
    const r = await post(
      `${token.url}/`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: await stack.callerToken(BILLING) },
    );
    expect(r.status).toBe(200);
    expect(r.json['access_token']).toMatch(/^ya29\./);
    expect((await post(`${token.url}/token`, {}, {})).status).toBe(404);
  });

  // The admin function refuses to start without a shared cache (test/integration/purge-reach.test.ts).
  it.runIf(redisAvailable || process.env['CI'] === 'true')('serves admin at /purge', async () => {
    const cache = await startLocalSharedCache();
    try {
      const admin = await stack.startBroker('admin', cache.env);
      const purged = await post(`${admin.url}/purge`, { all: true }, { token: await stack.callerToken(OPS) });
      expect(purged.status).toBe(200);
      expect(purged.json['purged']).toBe('all');
      await admin.stop();
    } finally {
      await cache.close();
    }
  });

  it('serves jwt and idtoken at /', async () => {
    for (const target of ['jwt', 'idtoken']) {
      const b = await stack.startBroker(target);
      const r = await post(
        `${b.url}/`,
        { serviceAccount: REPORTING, audience: 'https://x.example/' },
        { token: await stack.callerToken(BILLING) },
      );
      // billing has no jwt/idtoken grant: a JSON 403 proves the target is wired, authenticated and authorised.
      expect(r.status).toBe(403);
      expect(r.json['error']).toBe('access_denied');
    }
  });
});

describe('configuration is checked at start', () => {
  it('refuses to start, listing every problem in one message', async () => {
    const err = await startBrokerProcess({
      target: 'broker',
      env: {
        BROKER_POLICY: '{"serviceAccounts": [], "grants": "x"}',
        BROKER_JWKS_URL: 'http://jwks.example.com/',
      },
    }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/exited with/);
    expect(err?.message).toContain('BROKER_AUDIENCE is required');
    expect(err?.message).toContain('BROKER_JWKS_URL: must be https');
    expect(err?.message).toMatch(/BROKER_POLICY: .*serviceAccounts/);
  });
});

describe('npm start', () => {
  it('runs the whole stack and serves a keyed token, a keyless delegated token and a token-exchange token end to end', async () => {
    // Random ports and its own folder: the docs' own run (try-it-locally.test.ts) may be up beside it.
    const dir = mkdtempSync(join(tmpdir(), 'npm-start-'));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [`${ROOT}dist/infra/start.js`, '--once', '--port', '0', '--dir', dir],
      {
        cwd: ROOT,
        timeout: 60_000,
      },
    );
    expect(stdout).toContain('End to end: OK');
    expect(stdout).toContain('broker; fwd=miss');
    expect(stdout).toContain('broker; hit');
    expect(stdout).toMatch(
      /^export BROKER_URL=http:\/\/127\.0\.0\.1:\d+ BROKER_AUDIENCE=https:\/\/broker\.local\.test$/m,
    );
    expect(stdout).toContain('curl -sS -X POST "$BROKER_URL/token"');
    expect(stdout).toContain(
      'minted keyless: IAM signJwt calls 1, Secret Manager reads for it 0 (audit: accountMode "keyless")',
    );
    expect(stdout).toContain('the same token the microservice got: one cache entry');
    expect(stdout).toContain('"sub":"alice@demo.example"');
    expect(stdout).toContain(`${dir}/policy.json`);
    rmSync(dir, { recursive: true, force: true });
  }, 90_000);
});
