import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { IamCredentials } from '../../shared/adapters/iam-credentials.js';
import type { SecretSource } from '../../shared/adapters/secret-source.js';
import type { TokenEndpoint } from '../../shared/adapters/token-endpoint.js';
import { createBroker } from '../../shared/broker.js';
import { createMemoryCache } from '../../shared/cache/memory.js';
import { TokenStore } from '../../shared/cache/token-store.js';
import { BrokerError } from '../../shared/errors.js';
import { createKeyStore } from '../../shared/key-store.js';
import { createKeyedMinter } from '../../shared/minting/keyed.js';
import { createKeylessMinter } from '../../shared/minting/keyless.js';
import { decide } from '../../shared/policy/evaluate.js';
import { compilePolicy } from '../../shared/policy/load.js';
import { type MintRequest, parseJwtRequest, parseTokenRequest } from '../../shared/request.js';
import { accessDenied } from '../../shared/service.js';

const keyJson = readFileSync(new URL('../fixtures/service-account.json', import.meta.url), 'utf8');
const SA = 'fixture@fixture-project.iam.gserviceaccount.com';
const CALLER = 'caller@p.iam.gserviceaccount.com';
const SCOPE = 'https://www.googleapis.com/auth/bigquery.readonly';
const policy = compilePolicy({
  serviceAccounts: [{ email: SA, key: 'projects/p/secrets/k/versions/latest' }],
  grants: [
    { callers: [CALLER], serviceAccounts: [SA], scopes: [SCOPE] },
    {
      callers: [CALLER],
      serviceAccounts: [SA],
      operations: ['jwt'],
      audiences: ['https://firestore.googleapis.com/'],
    },
  ],
  admins: ['ops@p.iam.gserviceaccount.com'],
});

/** An in-memory token endpoint: counts exchanges and plays scripted failures. */
function endpoint(script: Array<'ok' | BrokerError> = [], expiresIn = 3600) {
  const calls: string[] = [];
  const ep: TokenEndpoint = {
    async exchange(assertion) {
      calls.push(assertion);
      await new Promise((r) => setTimeout(r, 5));
      const next = script.shift() ?? 'ok';
      if (next !== 'ok') throw next;
      return { token: `ya29.token-${calls.length}`, expiresIn, scope: SCOPE };
    },
  };
  return { ep, calls };
}

function secrets(): SecretSource & { reads: number } {
  const s = {
    reads: 0,
    async read() {
      s.reads++;
      return new TextEncoder().encode(keyJson);
    },
  };
  return s;
}

function setup(opts: { script?: Array<'ok' | BrokerError>; expiresIn?: number; skew?: number } = {}) {
  let now = 1_700_000_000_000;
  const { ep, calls } = endpoint(opts.script, opts.expiresIn);
  const src = secrets();
  const broker = createBroker({
    minters: {
      keyed: createKeyedMinter({
        keys: createKeyStore({ secrets: src, now: () => now }),
        tokenEndpoint: ep,
        tokenUrl: 'https://oauth2.googleapis.com/token',
        now: () => now,
      }),
      keyless: {
        mint: () => Promise.reject(new Error('this policy has no keyless account')),
      },
    },
    store: new TokenStore({
      l1: createMemoryCache({ now: () => now }),
      refreshSkewSeconds: opts.skew ?? 300,
      refreshAheadSeconds: 0,
      now: () => now,
    }),
  });
  /** Decides once, then serves: what the service does after verifying the caller. */
  const mint = (caller: string, req: MintRequest) => {
    const { outcome } = decide(policy, caller, { action: 'mint', request: req });
    if (!outcome.allowed || !('account' in outcome))
      return Promise.reject(new BrokerError('access_denied', accessDenied(caller)));
    return broker.serve(broker.admit(req, outcome.account));
  };
  return { broker, mint, calls, src, advance: (ms: number) => (now += ms) };
}

const tokenReq = (extra: Record<string, unknown> = {}) =>
  parseTokenRequest({ serviceAccount: SA, scopes: [SCOPE], ...extra });
const unavailable = () => new BrokerError('upstream_unavailable', 'down', { retryAfterSeconds: 5 });

describe('broker', () => {
  it('mints once for many concurrent identical requests, then serves hits', async () => {
    const { mint, calls, src } = setup();
    const served = await Promise.all(Array.from({ length: 100 }, () => mint(CALLER, tokenReq())));
    expect(calls).toHaveLength(1);
    expect(src.reads).toBe(1);
    expect(new Set(served.map((s) => s.token)).size).toBe(1);
    expect(served.filter((s) => s.cache === 'miss')).toHaveLength(100);
    expect((await mint(CALLER, tokenReq())).cache).toBe('hit');
  });

  it('re-mints inside the refresh skew and for a larger minLifetimeSeconds', async () => {
    const { mint, calls, advance } = setup();
    await mint(CALLER, tokenReq());
    advance((3600 - 700) * 1000); // 700 s left
    expect((await mint(CALLER, tokenReq())).cache).toBe('hit');
    const strict = await mint(CALLER, tokenReq({ minLifetimeSeconds: 800 }));
    expect(strict.cache).toBe('miss');
    expect(calls).toHaveLength(2);
    advance((3600 - 250) * 1000); // the new token has 250 s left: inside the 300 s skew
    expect((await mint(CALLER, tokenReq())).cache).toBe('miss');
    expect(calls).toHaveLength(3);
  });

  it('serves a stale token when Google is unreachable, only with more than 60 s and the minimum left', async () => {
    const { mint, advance } = setup({ script: ['ok', unavailable(), unavailable(), unavailable()] });
    const first = await mint(CALLER, tokenReq());
    advance((3600 - 200) * 1000); // 200 s left: past the skew
    const stale = await mint(CALLER, tokenReq());
    expect(stale).toMatchObject({ cache: 'stale', token: first.token });
    await expect(mint(CALLER, tokenReq({ minLifetimeSeconds: 300 }))).rejects.toMatchObject({
      code: 'upstream_unavailable',
    });
    advance(150 * 1000); // 50 s left
    await expect(mint(CALLER, tokenReq())).rejects.toMatchObject({ code: 'upstream_unavailable' });
  });

  it('never serves stale tokens for a refusal (502)', async () => {
    const refused = new BrokerError('upstream_rejected', 'no', { upstreamError: 'invalid_scope' });
    const { mint, advance } = setup({ script: ['ok', refused] });
    await mint(CALLER, tokenReq());
    advance((3600 - 200) * 1000);
    await expect(mint(CALLER, tokenReq())).rejects.toBe(refused);
  });

  it('reads the secret again once when Google rejects the key signature', async () => {
    const rejected = new BrokerError('upstream_rejected', 'bad sig', {
      upstreamError: 'invalid_grant',
      upstreamBody: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' },
    });
    const { mint, calls, src } = setup({ script: [rejected, 'ok'] });
    expect((await mint(CALLER, tokenReq())).cache).toBe('miss');
    expect(calls).toHaveLength(2);
    expect(src.reads).toBe(2);
    const twice = setup({ script: [rejected, rejected] });
    await expect(twice.mint(CALLER, tokenReq())).rejects.toMatchObject({
      upstreamError: 'invalid_grant',
    });
    expect(twice.calls).toHaveLength(2);
  });

  it('denies by default with one body for unknown and forbidden targets', async () => {
    const { mint, calls } = setup();
    const attempts = [
      mint('stranger@p.iam.gserviceaccount.com', tokenReq()),
      mint(
        CALLER,
        parseTokenRequest({ serviceAccount: 'nobody@p.iam.gserviceaccount.com', scopes: [SCOPE] }),
      ),
      mint(CALLER, tokenReq({ scopes: [SCOPE, 'https://www.googleapis.com/auth/cloud-platform'] })),
      mint(CALLER, tokenReq({ subject: 'alice@acme.com' })),
      mint(CALLER, parseJwtRequest({ serviceAccount: SA, audience: 'https://storage.googleapis.com/' })),
    ];
    const errors = await Promise.all(
      attempts.map((p) =>
        p.then(
          () => undefined,
          (e: unknown) => e as BrokerError,
        ),
      ),
    );
    // One text, which names only the caller itself.
    expect(
      new Set(
        errors.map((e) => `${e?.code}|${e?.message.replace(/\S+@p\.iam\.gserviceaccount\.com/, '<caller>')}`),
      ).size,
    ).toBe(1);
    expect(errors[0]?.code).toBe('access_denied');
    expect(calls).toHaveLength(0);
  });

  it('signs self-signed JWTs locally, with no call to Google', async () => {
    const { mint, calls } = setup();
    const served = await mint(
      CALLER,
      parseJwtRequest({ serviceAccount: SA, audience: 'https://firestore.googleapis.com/' }),
    );
    expect(calls).toHaveLength(0);
    const claims = JSON.parse(Buffer.from(served.token.split('.')[1]!, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    expect(claims).toMatchObject({ iss: SA, sub: SA, aud: 'https://firestore.googleapis.com/' });
    expect(served.expiresAt).toBe(Number(claims['exp']) * 1000);
  });

  it('mints keyless accounts through IAM with no secret read, and serves them stale while IAM is unreachable', async () => {
    let now = 1_700_000_000_000;
    const KEYLESS = 'keyless@p.iam.gserviceaccount.com';
    const script: Array<'ok' | BrokerError> = ['ok', unavailable()];
    const calls: string[] = [];
    const iam: IamCredentials = {
      async generateAccessToken(account, scopes, delegates) {
        calls.push(`generateAccessToken ${account} ${scopes.join(' ')} ${delegates.join(',')}`);
        const next = script.shift() ?? 'ok';
        if (next !== 'ok') throw next;
        return { token: `ya29.keyless-${calls.length}`, expiresAt: now + 3600_000 };
      },
      signJwt: () => Promise.reject(new Error('not used')),
      generateIdToken: () => Promise.reject(new Error('not used')),
    };
    const src = secrets();
    const keylessPolicy = compilePolicy({
      serviceAccounts: [{ email: KEYLESS, keyless: true, delegates: ['hop@p.iam.gserviceaccount.com'] }],
      grants: [{ callers: [CALLER], serviceAccounts: [KEYLESS], scopes: [SCOPE] }],
    });
    const { ep } = endpoint();
    const broker = createBroker({
      minters: {
        keyed: createKeyedMinter({
          keys: createKeyStore({ secrets: src, now: () => now }),
          tokenEndpoint: ep,
          tokenUrl: 'https://oauth2.googleapis.com/token',
          now: () => now,
        }),
        keyless: createKeylessMinter({
          iam,
          tokenEndpoint: ep,
          tokenUrl: 'https://oauth2.googleapis.com/token',
          now: () => now,
        }),
      },
      store: new TokenStore({
        l1: createMemoryCache({ now: () => now }),
        refreshSkewSeconds: 300,
        refreshAheadSeconds: 0,
        now: () => now,
      }),
    });
    const request = parseTokenRequest({ serviceAccount: KEYLESS, scopes: [SCOPE] });
    const { outcome } = decide(keylessPolicy, CALLER, { action: 'mint', request });
    if (!outcome.allowed || !('account' in outcome)) throw new Error('denied');
    expect(outcome.account.mode).toBe('keyless');
    const admitted = broker.admit(request, outcome.account);
    const first = await broker.serve(admitted);
    expect(first).toMatchObject({ token: 'ya29.keyless-1', cache: 'miss' });
    expect(calls).toEqual([`generateAccessToken ${KEYLESS} ${SCOPE} hop@p.iam.gserviceaccount.com`]);
    now += (3600 - 200) * 1000; // past the skew, IAM unreachable: the token in hand is served stale
    expect(await broker.serve(admitted)).toMatchObject({ token: 'ya29.keyless-1', cache: 'stale' });
    expect(src.reads).toBe(0);
  });

  it('purges an account: its next request mints again', async () => {
    const { broker, mint, calls } = setup();
    await mint(CALLER, tokenReq());
    expect(await broker.purge([SA])).toEqual({
      accounts: [SA],
      dropped: 1,
      reach: 'this_instance',
    });
    expect((await mint(CALLER, tokenReq())).cache).toBe('miss');
    expect(calls).toHaveLength(2);
  });
});
