import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureSecret } from '../../infra/capture.js';
import {
  type GitHubActionsIssuer,
  type GoogleStandIn,
  type KubernetesIssuer,
  startGoogleStandIn,
} from '../../infra/google/server.js';
import { type CallerVerifierOptions, createCallerVerifier } from '../../shared/adapters/caller-auth.js';
import { discoveryUrl, processDiscovery } from '../../shared/adapters/oidc-discovery.js';
import { BrokerError } from '../../shared/errors.js';
import { compilePolicy } from '../../shared/policy/load.js';

// The verifier over trusted issuers (docs/contract.md, "Verification"), driven against the GitHub-like and
// Kubernetes-like stand-ins with the clock in the test's hand: discovery, key sets per issuer, the refetch
// cooldown, stale keys while an issuer is down, the cold 503, and the discovery checks. Every request an
// issuer gets is counted at the issuer (`stats.byPath`).

const AUD = 'https://broker.test.example';
const K8S_AUD = 'token-broker';
let google: GoogleStandIn;
let github: GitHubActionsIssuer;
let k8s: KubernetesIssuer;
/** A third issuer the policy does not name: it must never be asked anything. */
let stranger: GitHubActionsIssuer;
let es: {
  server: Server;
  url: string;
  fetches: number;
  sign(claims: Record<string, unknown>): Promise<string>;
};

beforeAll(async () => {
  google = await startGoogleStandIn({ onSecret: captureSecret });
  github = await google.startGitHubIssuer({ run: { owner: 'acme', repo: 'etl' } });
  k8s = await google.startKubernetesIssuer();
  stranger = await google.startGitHubIssuer({ run: { owner: 'acme', repo: 'etl' } });
  // An ES256 issuer whose key set the policy names (`jwksUri`), with no discovery at all.
  const pair = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'es-1', alg: 'ES256', use: 'sig' };
  es = {
    fetches: 0,
    url: '',
    server: createServer((_req, res) => {
      es.fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    }),
    async sign(claims) {
      const now = Math.floor(Date.now() / 1000);
      const jwt = await new SignJWT({
        iss: es.url,
        aud: AUD,
        sub: 'job-7',
        iat: now,
        exp: now + 600,
        ...claims,
      })
        .setProtectedHeader({ alg: 'ES256', kid: 'es-1' })
        .sign(pair.privateKey);
      captureSecret(jwt);
      return jwt;
    },
  };
  await new Promise<void>((r) => es.server.listen(0, '127.0.0.1', r));
  es.url = `http://127.0.0.1:${(es.server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  google.reset();
  await github.setDown(false);
  await k8s.setDown(false);
});
afterAll(async () => {
  es?.server.close();
  await google?.close();
});

function issuers() {
  return compilePolicy(
    {
      serviceAccounts: [{ email: 'sa@p.iam.gserviceaccount.com', keyless: true }],
      grants: [],
      issuers: [
        { name: 'github', issuer: github.issuer, audiences: [AUD], claims: { repository_owner: 'acme' } },
        { name: 'onprem', issuer: k8s.issuer, audiences: [K8S_AUD] },
        { name: 'edge', issuer: es.url, audiences: [AUD], jwksUri: `${es.url}/keys` },
      ],
    },
    { allowLoopbackIssuers: true },
  ).issuers;
}

/** A verifier over the three issuers, on a clock the test moves. */
function verifier(clock = { now: Date.now() }, o: Partial<CallerVerifierOptions> = {}) {
  return {
    clock,
    v: createCallerVerifier({
      jwksUrl: google.jwksUrl,
      issuers: [google.issuer],
      audience: AUD,
      clockToleranceSeconds: 30,
      allowSignatureRemovedByGoogle: false,
      trustedIssuers: issuers(),
      allowLoopbackIssuers: true,
      now: () => clock.now,
      ...o,
    }),
  };
}

const jwks = (i: GitHubActionsIssuer | KubernetesIssuer) => i.stats.byPath[new URL(i.jwksUrl).pathname] ?? 0;
const discovery = (i: GitHubActionsIssuer | KubernetesIssuer) =>
  i.stats.byPath['/.well-known/openid-configuration'] ?? 0;

async function refusal(promise: Promise<unknown>): Promise<BrokerError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BrokerError);
  return err as BrokerError;
}

/** A GitHub token signed by its current key under a `kid` the key set does not have. */
const randomKid = () =>
  github.keys.sign(github.claims({ audience: AUD }), { typ: 'JWT', kid: randomUUID() }).then((t) => {
    captureSecret(t);
    return t;
  });

describe('trusted issuers, verified', () => {
  it('a GitHub-like token becomes github:SUB, a Kubernetes-like one onprem:SUB; discovery and keys fetched once', async () => {
    const { v } = verifier();
    const [d0, j0] = [discovery(github), jwks(github)];
    const gh = await github.mint({ audience: AUD });
    expect(await v.verify(`Bearer ${gh}`, undefined)).toEqual({
      principal: 'github:repo:acme/etl:ref:refs/heads/main',
      email: undefined,
      sub: 'repo:acme/etl:ref:refs/heads/main',
      iss: github.issuer,
      issuer: 'github',
    });
    // The synchronous path knows it now.
    expect(v.cached(`Bearer ${gh}`)?.principal).toBe('github:repo:acme/etl:ref:refs/heads/main');
    const kt = await k8s.mint({
      namespace: 'batch',
      serviceAccount: 'nightly',
      audiences: ['other', K8S_AUD],
    });
    expect((await v.verify(`Bearer ${kt}`, undefined)).principal).toBe(
      'onprem:system:serviceaccount:batch:nightly',
    );
    await v.verify(`Bearer ${await github.mint({ audience: AUD })}`, undefined);
    expect([discovery(github) - d0, jwks(github) - j0]).toEqual([1, 1]);
    expect(stranger.stats.requests).toBe(0);
  });

  it('takes ES256 from an issuer whose key set the policy names, and fetches no discovery for it', async () => {
    const { v } = verifier();
    const before = es.fetches;
    expect((await v.verify(`Bearer ${await es.sign({})}`, undefined)).principal).toBe('edge:job-7');
    expect(es.fetches - before).toBe(1);
  });

  it('an unknown `kid` refetches the key set at most once a minute per issuer: 50 random kids cost one fetch', async () => {
    const { v, clock } = verifier();
    await v.verify(`Bearer ${await github.mint({ audience: AUD })}`, undefined);
    const before = jwks(github);
    clock.now += 61_000;
    const tokens = await Promise.all(Array.from({ length: 50 }, randomKid));
    // Half at once, half one after another, all within the minute.
    const errs = await Promise.all(
      tokens.slice(0, 25).map((t) => refusal(v.verify(`Bearer ${t}`, undefined))),
    );
    for (const t of tokens.slice(25)) {
      clock.now += 1000;
      errs.push(await refusal(v.verify(`Bearer ${t}`, undefined)));
    }
    expect(errs.every((e) => e.code === 'invalid_token' && e.reason === 'unknown_key')).toBe(true);
    expect(jwks(github) - before).toBe(1);
    // The minute over, the next unknown kid may refetch once more.
    clock.now += 36_000;
    await refusal(v.verify(`Bearer ${await randomKid()}`, undefined));
    expect(jwks(github) - before).toBe(2);
  });

  it('a rotated key verifies once the cooldown lets the key set be fetched again', async () => {
    const { v, clock } = verifier();
    await v.verify(`Bearer ${await github.mint({ audience: AUD })}`, undefined);
    await github.rotateKeys();
    const fresh = await github.mint({ audience: AUD });
    expect((await refusal(v.verify(`Bearer ${fresh}`, undefined))).reason).toBe('unknown_key');
    clock.now += 61_000;
    const again = await github.mint({ audience: AUD, iat: Math.floor(clock.now / 1000) });
    expect((await v.verify(`Bearer ${again}`, undefined)).issuer).toBe('github');
  });

  it('serves its keys stale while the issuer is down; a cold, unreachable issuer is 503, not 401', async () => {
    const { v, clock } = verifier();
    await v.verify(
      `Bearer ${await k8s.mint({ namespace: 'b', serviceAccount: 'n', audiences: [K8S_AUD] })}`,
      undefined,
    );
    await k8s.setDown(true);
    clock.now += 20 * 60_000; // past the keys' age: a background refresh fails, the keys in hand keep verifying
    const iat = Math.floor(clock.now / 1000);
    const later = await k8s.mint({ namespace: 'b', serviceAccount: 'n', audiences: [K8S_AUD], iat });
    expect((await v.verify(`Bearer ${later}`, undefined)).principal).toBe('onprem:system:serviceaccount:b:n');

    const cold = verifier();
    const token = await k8s.mint({ namespace: 'b', serviceAccount: 'n', audiences: [K8S_AUD] });
    const err = await refusal(cold.v.verify(`Bearer ${token}`, undefined));
    expect(err.code).toBe('upstream_unavailable');
    expect(err.reason).toBe('keys_unavailable');
    expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(err.message).toBe(
      'The keys that verify caller tokens of issuer onprem cannot be fetched; retry later.',
    );
  });

  it('refuses a discovery document that names another issuer, or a key set that is not https: 503, and the key set is never asked', async () => {
    for (const overrides of [
      { issuer: 'https://token.actions.githubusercontent.com' },
      { jwks_uri: 'http://jwks.example.test/keys' },
      { jwks_uri: 'ftp://127.0.0.1/keys' },
      { jwks_uri: undefined },
    ]) {
      github.setDiscovery(overrides);
      const { v } = verifier();
      const before = jwks(github);
      const err = await refusal(v.verify(`Bearer ${await github.mint({ audience: AUD })}`, undefined));
      expect(err.code, JSON.stringify(overrides)).toBe('upstream_unavailable');
      expect(jwks(github) - before).toBe(0);
    }
    github.setDiscovery({});
    // And with loopback issuers not allowed, even a loopback key set is refused.
    const strict = verifier(undefined, { allowLoopbackIssuers: false });
    const err = await refusal(strict.v.verify(`Bearer ${await github.mint({ audience: AUD })}`, undefined));
    expect(err.code).toBe('upstream_unavailable');
  });

  it('refuses a token naming no trusted issuer without a request anywhere', async () => {
    const { v } = verifier();
    const counts = () => [github.stats.requests, k8s.stats.requests, stranger.stats.requests, es.fetches];
    const before = counts();
    for (const token of [
      await stranger.mint({ audience: AUD }),
      await github.mint({ audience: AUD, claims: { iss: `${github.issuer}/` } }),
      await github.mint({ audience: AUD, claims: { iss: stranger.issuer } }),
      await github.mint({ audience: AUD, claims: { iss: undefined } }),
      await github.mint({ audience: AUD, claims: { iss: 'https://accounts.google.com' } }),
    ]) {
      const err = await refusal(v.verify(`Bearer ${token}`, undefined));
      expect([err.code, err.reason]).toEqual([
        'invalid_token',
        expect.stringMatching(/wrong_issuer|bad_signature|unknown_key/),
      ]);
    }
    expect(counts()).toEqual(before);
    expect(stranger.stats.requests).toBe(0);
  });
});

describe('processDiscovery (checks a recorded answer)', () => {
  const ok = (body: unknown, status = 200) => ({ status, headers: {}, body: JSON.stringify(body) });
  const ISS = 'https://token.actions.githubusercontent.com';

  it('returns jwks_uri when issuer matches exactly and the key set is https', () => {
    expect(processDiscovery(ok({ issuer: ISS, jwks_uri: `${ISS}/.well-known/jwks` }), ISS, false)).toBe(
      `${ISS}/.well-known/jwks`,
    );
    expect(discoveryUrl(`${ISS}/`)).toBe(`${ISS}/.well-known/openid-configuration`);
  });

  it.each([
    [ok({ issuer: ISS, jwks_uri: 'x' }, 404), /HTTP 404/],
    [{ status: 200, headers: {}, body: '[1]' }, /not a JSON object/],
    [ok({ issuer: `${ISS}/`, jwks_uri: `${ISS}/jwks` }), /another issuer/],
    [ok({ jwks_uri: `${ISS}/jwks` }), /another issuer/],
    [ok({ issuer: ISS, jwks_uri: 'http://127.0.0.1/jwks' }), /jwks_uri must be https/],
    [ok({ issuer: ISS, jwks_uri: 'https://u:p@example.com/jwks' }), /jwks_uri must not carry credentials/],
    [ok({ issuer: ISS }), /jwks_uri must be a URL/],
  ])('refuses %#', (res, message) => {
    expect(() => processDiscovery(res, ISS, false)).toThrow(message);
  });
});
