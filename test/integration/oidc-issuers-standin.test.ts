import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IdentityPoolClient } from 'google-auth-library';
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type GitHubActionsIssuer,
  type GoogleStandIn,
  type KubernetesIssuer,
  startGoogleStandIn,
} from '../../infra/google/server.js';
import { pythonAvailable, runPython } from '../support/python.js';

const PROVIDER =
  '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci/providers';
const GITHUB_AUDIENCE = `https:${PROVIDER}/github`;
const secrets: string[] = [];
let google: GoogleStandIn;
let github: GitHubActionsIssuer;
let k8s: KubernetesIssuer;
let dir: string;

beforeAll(async () => {
  google = await startGoogleStandIn({ onSecret: (s) => secrets.push(s) });
  github = await google.startGitHubIssuer({
    run: { owner: 'acme', repo: 'payments', ownerId: '9001', repositoryId: '424242' },
  });
  k8s = await google.startKubernetesIssuer();
  dir = mkdtempSync(join(tmpdir(), 'oidc-standin-'));
});
afterEach(async () => {
  google.reset();
  await github.setDown(false);
  await k8s.setDown(false);
});
afterAll(async () => google?.close());

const verify = (issuer: { jwksUrl: string; issuer: string }, token: string, audience: string) =>
  jwtVerify(token, createRemoteJWKSet(new URL(issuer.jwksUrl), { cacheMaxAge: 0, cooldownDuration: 0 }), {
    issuer: issuer.issuer,
    audience,
    algorithms: ['RS256'],
  });

/** An identity-pool credential configuration, as `gcloud iam workload-identity-pools create-cred-config` writes it. */
const credentialConfig = (provider: string, credentialSource: Record<string, unknown>) => ({
  type: 'external_account',
  audience: `${PROVIDER}/${provider}`,
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  token_url: 'https://sts.googleapis.com/v1/token',
  credential_source: credentialSource,
});
const githubUrlSource = (requestToken = github.requestToken) => ({
  url: `${github.idTokenRequestUrl}&audience=${encodeURIComponent(GITHUB_AUDIENCE)}`,
  headers: { Authorization: `bearer ${requestToken}` },
  format: { type: 'json', subject_token_field_name: 'value' },
});

/** A GET on a fresh connection, so a down server is seen as ECONNREFUSED. */
const rawGet = (url: string) =>
  new Promise<string>((resolve) => {
    request(url, { agent: false }, (res) => {
      res.resume();
      resolve(String(res.statusCode));
    })
      .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
      .end();
  });

describe('GitHub-Actions-like issuer', () => {
  it("serves GitHub's discovery document and JWKS, and a token URL whose tokens jose verifies", async () => {
    const before = { ...github.stats.byPath };
    const discovery = (await (await fetch(github.discoveryUrl)).json()) as Record<string, unknown>;
    expect(discovery).toMatchObject({
      issuer: github.issuer,
      jwks_uri: `${github.url}/.well-known/jwks`,
      subject_types_supported: ['public', 'pairwise'],
      response_types_supported: ['id_token'],
      id_token_signing_alg_values_supported: ['RS256'],
      scopes_supported: ['openid'],
    });
    expect(discovery['claims_supported']).toEqual(
      expect.arrayContaining(['repository_owner_id', 'job_workflow_ref']),
    );
    const jwks = (await (await fetch(github.jwksUrl)).json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys).toEqual([
      expect.objectContaining({
        kty: 'RSA',
        alg: 'RS256',
        use: 'sig',
        kid: github.keys.current.kid,
        e: 'AQAB',
      }),
    ]);

    const res = await fetch(`${github.idTokenRequestUrl}&audience=${encodeURIComponent(GITHUB_AUDIENCE)}`, {
      headers: { Authorization: `bearer ${github.requestToken}` },
    });
    const body = (await res.json()) as { count: number; value: string };
    expect(Object.keys(body).sort()).toEqual(['count', 'value']);
    expect(body.count).toBe(body.value.length);
    const { payload, protectedHeader } = await verify(github, body.value, GITHUB_AUDIENCE);
    expect(protectedHeader).toEqual({
      alg: 'RS256',
      kid: github.keys.current.kid,
      typ: 'JWT',
      x5t: expect.stringMatching(/^[A-Za-z0-9_-]{27}$/),
    });
    expect(payload).toMatchObject({
      sub: 'repo:acme/payments:ref:refs/heads/main',
      repository: 'acme/payments',
      repository_owner: 'acme',
      repository_owner_id: '9001',
      repository_id: '424242',
      ref: 'refs/heads/main',
      ref_type: 'branch',
      event_name: 'push',
      job_workflow_ref: 'acme/payments/.github/workflows/deploy.yml@refs/heads/main',
      runner_environment: 'github-hosted',
    });
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(payload.iat! - payload.nbf!).toBe(600);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(secrets).toContain(body.value);
    const delta = (path: string) => (github.stats.byPath[path] ?? 0) - (before[path] ?? 0);
    expect([delta('/.well-known/openid-configuration'), delta('/.well-known/jwks')]).toEqual([1, 2]);
    expect(delta(new URL(github.idTokenRequestUrl).pathname)).toBe(1);
  });

  it("answers google-auth-library's IdentityPoolClient (url source, json format) with the job's token, and refuses a wrong request token", async () => {
    const before = github.stats.tokensIssued;
    const client = new IdentityPoolClient(credentialConfig('github', githubUrlSource()));
    const subjectToken = await client.retrieveSubjectToken();
    const { payload } = await verify(github, subjectToken, GITHUB_AUDIENCE);
    expect(payload['repository']).toBe('acme/payments');
    expect(github.stats.tokensIssued - before).toBe(1);

    const refused = github.stats.refused;
    const wrong = new IdentityPoolClient(
      credentialConfig('github', githubUrlSource('not-the-request-token')),
    );
    await expect(wrong.retrieveSubjectToken()).rejects.toMatchObject({ status: 401 });
    expect(github.stats.refused - refused).toBe(1);
    const none = await fetch(github.idTokenRequestUrl);
    expect([none.status, await none.json()]).toEqual([401, { message: expect.any(String) }]);
  });

  it('names the subject by environment or pull request as GitHub does, and uses https://github.com/OWNER as the default audience', async () => {
    github.setRun({ environment: 'production' });
    try {
      const res = await fetch(github.idTokenRequestUrl, {
        headers: { Authorization: `Bearer ${github.requestToken}` },
      });
      const { value } = (await res.json()) as { value: string };
      const { payload } = await verify(github, value, 'https://github.com/acme');
      expect([payload.sub, payload['environment']]).toEqual([
        'repo:acme/payments:environment:production',
        'production',
      ]);
    } finally {
      github.setRun({ environment: undefined });
    }
    const pr = await github.mint({
      run: { eventName: 'pull_request', ref: 'refs/pull/7/merge' },
      audience: 'x',
    });
    expect((await verify(github, pr, 'x')).payload.sub).toBe('repo:acme/payments:pull_request');
    // Direct mints: chosen claims, owner, lifetime and iat.
    const iat = Math.floor(Date.now() / 1000) - 100;
    const custom = await github.mint({
      audience: 'aud-1',
      run: { owner: 'evil-org', repo: 'payments' },
      claims: { actor: 'mallory', jti: undefined },
      lifetimeSeconds: 3600,
      iat,
    });
    const { payload } = await verify(github, custom, 'aud-1');
    expect(payload).toMatchObject({
      repository: 'evil-org/payments',
      actor: 'mallory',
      iat,
      exp: iat + 3600,
    });
    expect(payload.jti).toBeUndefined();
    // An expired token fails verification.
    const old = await github.mint({ audience: 'aud-1', iat: iat - 4000 });
    await expect(verify(github, old, 'aud-1')).rejects.toBeInstanceOf(errors.JWTExpired);
  });

  it('mints forgeries a verifier must refuse: alg none, HS256 keyed with the public key, an unpublished key, another issuer’s key', async () => {
    const none = await github.mint({ alg: 'none', audience: 'a' });
    expect(none.endsWith('.')).toBe(true);
    expect(decodeProtectedHeader(none).alg).toBe('none');
    await expect(verify(github, none, 'a')).rejects.toThrow();
    const hs = await github.mint({ alg: 'HS256', audience: 'a' });
    expect(decodeProtectedHeader(hs)).toMatchObject({ alg: 'HS256', kid: github.keys.current.kid });
    await expect(verify(github, hs, 'a')).rejects.toThrow();
    const unpublished = await github.mint({ key: 'unpublished', audience: 'a' });
    await expect(verify(github, unpublished, 'a')).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    const foreign = await github.mint({ key: k8s, audience: 'a' });
    expect(decodeProtectedHeader(foreign).kid).toBe(k8s.keys.current.kid);
    await expect(verify(github, foreign, 'a')).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    // The same bytes do verify against the other issuer's JWKS: the signature is real.
    await expect(
      jwtVerify(foreign, createRemoteJWKSet(new URL(k8s.jwksUrl)), { audience: 'a' }),
    ).resolves.toBeDefined();
  });

  it('rotates keys (the old one stays published until retired), goes down and back, and serves overridden discovery', async () => {
    const oldToken = await github.mint({ audience: 'a' });
    const oldKid = github.keys.current.kid;
    const newKid = await github.rotateKeys();
    expect(newKid).not.toBe(oldKid);
    const kids = async () =>
      ((await (await fetch(github.jwksUrl)).json()) as { keys: Array<{ kid: string }> }).keys.map(
        (k) => k.kid,
      );
    expect(await kids()).toEqual([oldKid, newKid]);
    expect(decodeProtectedHeader(await github.mint({ audience: 'a' })).kid).toBe(newKid);
    await expect(verify(github, oldToken, 'a')).resolves.toBeDefined();
    await github.rotateKeys({ retireOld: true });
    expect(await kids()).toHaveLength(1);
    await expect(verify(github, oldToken, 'a')).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);

    await github.setDown(true);
    expect(await rawGet(github.discoveryUrl)).toBe('ECONNREFUSED');
    await github.setDown(false);
    expect(await rawGet(github.discoveryUrl)).toBe('200');

    github.setDiscovery({
      jwks_uri: 'http://keys.example.com/jwks',
      issuer: 'https://token.actions.githubusercontent.com',
    });
    expect(await (await fetch(github.discoveryUrl)).json()).toMatchObject({
      jwks_uri: 'http://keys.example.com/jwks',
      issuer: 'https://token.actions.githubusercontent.com',
    });
    github.setDiscovery({ scopes_supported: undefined });
    expect(await (await fetch(github.discoveryUrl)).json()).not.toHaveProperty('scopes_supported');
    github.reset();
    expect(((await (await fetch(github.discoveryUrl)).json()) as { issuer: string }).issuer).toBe(
      github.issuer,
    );
  });

  it('plays faults on one path, and an issuer nobody configured gets no request at all', async () => {
    github.injectFault({ kind: 'status', status: 503, only: '/.well-known/jwks' });
    expect((await fetch(github.discoveryUrl)).status).toBe(200);
    expect((await fetch(github.jwksUrl)).status).toBe(503);
    expect((await fetch(github.jwksUrl)).status).toBe(200);
    github.injectFault({ kind: 'hang' });
    await expect(fetch(github.jwksUrl, { signal: AbortSignal.timeout(200) })).rejects.toMatchObject({
      name: 'TimeoutError',
    });
    github.injectFault({ kind: 'reset' });
    await expect(fetch(github.jwksUrl)).rejects.toThrow();

    const idle = await google.startGitHubIssuer();
    const idleK8s = await google.startKubernetesIssuer();
    await github.mint();
    expect([idle.stats.requests, idle.stats.byPath, idleK8s.stats.requests]).toEqual([0, {}, 0]);
  });
});

describe('Kubernetes-like issuer', () => {
  it('serves discovery and /openid/v1/jwks as the API server does, with tokens jose verifies', async () => {
    const discovery = (await (await fetch(k8s.discoveryUrl)).json()) as Record<string, unknown>;
    expect(discovery).toEqual({
      issuer: k8s.issuer,
      jwks_uri: `${k8s.url}/openid/v1/jwks`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    });
    const jwks = await fetch(k8s.jwksUrl);
    expect(jwks.headers.get('content-type')).toBe('application/jwk-set+json');
    const token = await k8s.mint({
      namespace: 'payments',
      serviceAccount: 'reporter',
      audiences: ['https://broker.acme.example'],
      node: { name: 'node-a' },
    });
    const { payload, protectedHeader } = await verify(k8s, token, 'https://broker.acme.example');
    expect(protectedHeader).toEqual({ alg: 'RS256', kid: k8s.keys.current.kid });
    expect(protectedHeader.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(payload).toMatchObject({
      sub: 'system:serviceaccount:payments:reporter',
      aud: ['https://broker.acme.example'],
      'kubernetes.io': {
        namespace: 'payments',
        serviceaccount: { name: 'reporter', uid: expect.stringMatching(/^[0-9a-f-]{36}$/) },
        pod: { name: expect.stringContaining('reporter'), uid: expect.any(String) },
        node: { name: 'node-a', uid: expect.any(String) },
      },
    });
    expect([payload.exp! - payload.iat!, payload.nbf]).toEqual([3600, payload.iat]);
    expect(() => k8s.claims({ namespace: 'n', serviceAccount: 's', expirationSeconds: 599 })).toThrow(/600/);
  });

  it("writes a projected token file that google-auth-library's IdentityPoolClient reads, and refreshes it on demand", async () => {
    const projected = await k8s.projectToken(join(dir, 'sa', 'token'), {
      namespace: 'payments',
      serviceAccount: 'reporter',
      audiences: [`https:${PROVIDER}/k8s`],
      expirationSeconds: 600,
    });
    const client = new IdentityPoolClient(credentialConfig('k8s', { file: projected.path }));
    const first = await client.retrieveSubjectToken();
    expect(first).toBe(projected.token);
    expect((await verify(k8s, first, `https:${PROVIDER}/k8s`)).payload.exp).toBeDefined();
    const second = await projected.refresh({ pod: { name: 'reporter-new' } });
    expect(second).not.toBe(first);
    expect(readFileSync(projected.path, 'utf8')).toBe(second);
    const reread = await client.retrieveSubjectToken();
    expect(reread).toBe(second);
    expect(
      (
        (await verify(k8s, reread, `https:${PROVIDER}/k8s`)).payload['kubernetes.io'] as {
          pod: { name: string };
        }
      ).pod.name,
    ).toBe('reporter-new');
  });

  it('counts requests per path, rotates, and goes down and back', async () => {
    const before = k8s.stats.byPath['/openid/v1/jwks'] ?? 0;
    const old = await k8s.mint({ namespace: 'n', serviceAccount: 's' });
    await k8s.rotateKeys();
    await expect(verify(k8s, old, k8s.issuer)).resolves.toBeDefined();
    expect((k8s.stats.byPath['/openid/v1/jwks'] ?? 0) - before).toBe(1);
    await k8s.setDown(true);
    expect(await rawGet(k8s.jwksUrl)).toBe('ECONNREFUSED');
    await k8s.setDown(false);
    expect(await rawGet(k8s.jwksUrl)).toBe('200');
  });
});

describe.skipIf(!pythonAvailable())("issuers as identity-pool sources of Python's google-auth", () => {
  it('identity_pool.Credentials reads the GitHub token URL (json) and the projected token file (text)', async () => {
    const projected = await k8s.projectToken(join(dir, 'py', 'token'), {
      namespace: 'payments',
      serviceAccount: 'py-job',
      audiences: [`https:${PROVIDER}/k8s`],
    });
    const before = github.stats.tokensIssued;
    const out = await runPython(
      `
import json, os
import google.auth.transport.requests
from google.auth import identity_pool
request = google.auth.transport.requests.Request()
tokens = {}
for name in ("GITHUB", "K8S"):
    creds = identity_pool.Credentials.from_info(json.loads(os.environ[name]))
    tokens[name] = creds.retrieve_subject_token(request)
print(json.dumps(tokens))
`,
      {
        GITHUB: JSON.stringify(credentialConfig('github', githubUrlSource())),
        K8S: JSON.stringify(credentialConfig('k8s', { file: projected.path, format: { type: 'text' } })),
      },
    );
    const tokens = JSON.parse(out) as { GITHUB: string; K8S: string };
    expect((await verify(github, tokens.GITHUB, GITHUB_AUDIENCE)).payload['repository_owner']).toBe('acme');
    expect(github.stats.tokensIssued - before).toBe(1);
    expect(tokens.K8S).toBe(projected.token);
    expect((await verify(k8s, tokens.K8S, `https:${PROVIDER}/k8s`)).payload.sub).toBe(
      'system:serviceaccount:payments:py-job',
    );
  });
});
