import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GitHubActionsIssuer, KubernetesIssuer } from '../../infra/google/server.js';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import {
  auditLines,
  CLOUD_PLATFORM,
  ETL_MAIN,
  type ExternalStack,
  K8S_AUDIENCE,
  NIGHTLY,
  requestCounts,
  startExternalStack,
} from './support/external.js';
import { AUDIENCE, BIGQUERY, KEYLESS, post, REPORTING } from './support/stack.js';

// Callers from other OIDC issuers (docs/contract.md, "Trusted issuers", "Principals", "Verification"):
// a GitHub-Actions-like job and a Kubernetes-like workload, through both doors and the policy, and every
// refusal the contract lists, each with no token served, no mint and no IAM call. Nothing ever reaches an
// issuer the policy does not name, whatever the token says.

const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
let x: ExternalStack;
let broker: InProcessBroker;
let github: GitHubActionsIssuer;
let k8s: KubernetesIssuer;

beforeAll(async () => {
  x = await startExternalStack();
  ({ broker, github, k8s } = x);
});
afterAll(async () => x?.stack.close());

const nowSeconds = () => Math.floor(Date.now() / 1000);
const ghToken = (o: Parameters<GitHubActionsIssuer['mint']>[0] = {}) =>
  github.mint({ audience: AUDIENCE, ...o });
const k8sToken = (o: Partial<Parameters<KubernetesIssuer['mint']>[0]> = {}) =>
  k8s.mint({ namespace: 'batch', serviceAccount: 'nightly', audiences: [K8S_AUDIENCE], ...o });

const json = (
  token: string,
  body: Record<string, unknown> = { serviceAccount: KEYLESS, scopes: [BIGQUERY] },
) => post(`${broker.url}/token`, body, { token });

async function sts(subjectToken: string, account = KEYLESS, scope = BIGQUERY) {
  const res = await fetch(`${broker.url}/sts`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: subjectToken,
      subject_token_type: JWT_TYPE,
      audience: `//token-broker/serviceAccounts/${account}`,
      scope,
    }).toString(),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** What the Google stand-in counted: tokens issued (any way) and IAM requests. */
const minted = () => [x.stack.google.stats.tokensIssued, x.stack.google.stats.iamRequests.total];

/**
 * Sends `token` to both doors, for a keyed and a keyless account: each must be refused (401 invalid_token,
 * or 400 invalid_grant at sts) with `reason` in the audit line, no token in the answer, and no mint or IAM call.
 */
async function expectRefused(token: string, reason: string): Promise<void> {
  const before = minted();
  const lines = broker.lines.length;
  for (const account of [REPORTING, KEYLESS]) {
    const j = await json(token, { serviceAccount: account, scopes: [BIGQUERY] });
    expect(j.status, `${reason} ${j.text}`).toBe(401);
    expect(j.json['error']).toBe('invalid_token');
    expect(j.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    expect(j.json).not.toHaveProperty('access_token');
    const s = await sts(token, account);
    expect(s.status, reason).toBe(400);
    expect(s.json['error']).toBe('invalid_grant');
    expect(s.json).not.toHaveProperty('access_token');
  }
  expect(minted(), reason).toEqual(before);
  const audits = broker.lines
    .slice(lines)
    .map((l) => (JSON.parse(l) as { audit: Record<string, unknown> }).audit);
  expect(audits).toHaveLength(4);
  for (const a of audits) expect([a['reason'], a['caller']], reason).toEqual([reason, undefined]);
}

describe('refusals: each a 401 (invalid_grant at sts), no token served, no mint, no IAM call', () => {
  it('an unknown iss: another issuer the policy does not name', async () => {
    await expectRefused(await x.strangers[0]!.mint({ audience: AUDIENCE }), 'wrong_issuer');
    await expectRefused(await ghToken({ claims: { iss: `${github.issuer}/` } }), 'wrong_issuer');
  });

  it("a wrong aud: GitHub's default audience, another Kubernetes audience", async () => {
    await expectRefused(await github.mint(), 'wrong_audience');
    await expectRefused(await k8sToken({ audiences: ['https://kubernetes.default.svc'] }), 'wrong_audience');
  });

  it("an alg of none or HS256 (keyed with the issuer's public key)", async () => {
    await expectRefused(await ghToken({ alg: 'none' }), 'alg_not_allowed');
    await expectRefused(await ghToken({ alg: 'HS256' }), 'alg_not_allowed');
    await expectRefused(await k8sToken({ alg: 'HS256' }), 'alg_not_allowed');
  });

  it('a key from another issuer, and a key the issuer never published', async () => {
    await expectRefused(await ghToken({ key: k8s }), 'unknown_key');
    await expectRefused(await k8sToken({ key: github }), 'unknown_key');
    await expectRefused(await ghToken({ key: 'unpublished' }), 'unknown_key');
  });

  it('a claims-guard mismatch, and a GitHub token for another owner', async () => {
    await expectRefused(await ghToken({ claims: { repository_owner: 'acme-evil' } }), 'claims_mismatch');
    await expectRefused(await ghToken({ claims: { repository_owner: undefined } }), 'claims_mismatch');
    await expectRefused(await ghToken({ run: { owner: 'evil', repo: 'etl' } }), 'claims_mismatch');
  });

  it('an expired token, one issued in the future, one not valid yet, one issued for more than 24 h', async () => {
    await expectRefused(await ghToken({ iat: nowSeconds() - 1000, lifetimeSeconds: 300 }), 'expired');
    await expectRefused(await ghToken({ iat: nowSeconds() + 600 }), 'issued_in_future');
    await expectRefused(await ghToken({ claims: { nbf: nowSeconds() + 600 } }), 'not_yet_valid');
    await expectRefused(await k8sToken({ expirationSeconds: 24 * 3600 + 1 }), 'lifetime_too_long');
  });

  it('a token without `sub`, and one whose signature Cloud Run would have removed', async () => {
    await expectRefused(await ghToken({ claims: { sub: undefined } }), 'invalid_subject');
    const [h, p] = (await ghToken()).split('.');
    await expectRefused(`${h}.${p}.SIGNATURE_REMOVED_BY_GOOGLE`, 'signature_removed');
  });

  it('none of these reached an issuer the policy does not name', () => {
    expect(requestCounts(x.strangers)).toEqual([0, 0]);
  });
});

describe("both doors serve a trusted issuer's caller, through the policy, with the principal in the audit line", () => {
  it('a GitHub-like job: the JSON API with Authorization: Bearer, and sts with the token as subject_token', async () => {
    const token = await ghToken();
    const j = await json(token, { serviceAccount: REPORTING, scopes: [BIGQUERY] });
    expect(j.status, j.text).toBe(200);
    expect(j.json['access_token']).toEqual(expect.any(String));
    const s = await sts(token, KEYLESS);
    expect(s.status).toBe(200);
    expect(s.json).toMatchObject({ token_type: 'Bearer', issued_token_type: expect.any(String) });
    const audits = auditLines(broker, ETL_MAIN);
    expect(audits.slice(-2).map((a) => [a['issuer'], a['decision'], a['account']])).toEqual([
      ['github', 'allow', REPORTING],
      ['github', 'allow', KEYLESS],
    ]);
  });

  it('a Kubernetes-like workload, its aud a list', async () => {
    const token = await k8sToken({ audiences: ['https://kubernetes.default.svc', K8S_AUDIENCE] });
    expect((await json(token, { serviceAccount: KEYLESS, scopes: [CLOUD_PLATFORM] })).status).toBe(200);
    expect((await sts(token, KEYLESS, CLOUD_PLATFORM)).status).toBe(200);
    expect(auditLines(broker, NIGHTLY).map((a) => [a['issuer'], a['decision']])).toEqual([
      ['onprem', 'allow'],
      ['onprem', 'allow'],
    ]);
  });

  it("answers a known caller's cache hit synchronously, without a promise, as for Google callers", async () => {
    const token = await ghToken();
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    expect((await json(token, body)).status).toBe(200);
    const result = broker.runtime.service.handle({
      action: 'token',
      credential: { authorization: `Bearer ${token}` },
      body,
    });
    expect(result).not.toBeInstanceOf(Promise);
    expect(result).toMatchObject({ ok: true, audit: { caller: ETL_MAIN, issuer: 'github', cache: 'hit' } });
  });

  it('a principal without a grant: 403 naming that principal (invalid_target at sts), and no mint', async () => {
    const token = await ghToken({ run: { owner: 'acme', repo: 'web' } });
    const before = minted();
    const j = await json(token);
    expect(j.status).toBe(403);
    expect(j.json['error_description']).toContain('github:repo:acme/web:ref:refs/heads/main');
    expect((await sts(token)).json['error']).toBe('invalid_target');
    expect(minted()).toEqual(before);
  });

  it('admins by principal prefix may purge; other principals may not', async () => {
    const ops = await ghToken({ run: { owner: 'acme', repo: 'ops' } });
    const purge = (token: string) =>
      post(`${broker.url}/admin/purge`, { serviceAccount: KEYLESS }, { token });
    expect((await purge(ops)).status).toBe(200);
    expect((await purge(await ghToken())).status).toBe(403);
  });

  it("rate limits count per principal, a prefix setting each principal's own limit", async () => {
    const a = await ghToken({ run: { owner: 'acme', repo: 'limited', ref: 'refs/heads/a' } });
    const b = await ghToken({ run: { owner: 'acme', repo: 'limited', ref: 'refs/heads/b' } });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await json(a)).status);
    expect(statuses).toEqual([200, 200, 429]);
    expect((await json(b)).status).toBe(200);
  });
});

describe('an issuer that cannot be reached', () => {
  it('cold: 503 upstream_unavailable with Retry-After, not 401; served once it is back', async () => {
    await k8s.setDown(true);
    const cold = await x.stack.serveBroker('broker', x.env);
    try {
      const token = await k8sToken();
      const before = minted();
      const r = await post(`${cold.url}/token`, { serviceAccount: KEYLESS, scopes: [BIGQUERY] }, { token });
      expect(r.status).toBe(503);
      expect(r.json['error']).toBe('upstream_unavailable');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(minted()).toEqual(before);
      // The broker that has the keys keeps verifying meanwhile.
      expect((await json(token)).status).toBe(200);
      await k8s.setDown(false);
      await new Promise((resolve) => setTimeout(resolve, 2100)); // the wait after the failures at start
      const ok = await post(`${cold.url}/token`, { serviceAccount: KEYLESS, scopes: [BIGQUERY] }, { token });
      expect(ok.status, ok.text).toBe(200);
    } finally {
      await k8s.setDown(false);
      await cold.stop();
    }
  });
});

describe('no request reaches an issuer the policy does not name, under any input', () => {
  it('arbitrary iss values, algorithms, kids and audiences: zero requests at every unconfigured issuer, and at the configured ones', async () => {
    const strangers = x.strangers;
    const everyone = [github, k8s, ...strangers];
    const before = requestCounts(everyone);
    const iss = fc.oneof(
      fc.webUrl(),
      fc.constantFrom(
        ...strangers.map((s) => s.issuer),
        `${github.issuer}/`,
        github.issuer.toUpperCase(),
        github.issuer.replace('http://', 'https://'),
        `${k8s.issuer}/openid/v1/jwks`,
        'https://accounts.google.com',
        'accounts.google.com',
        'https://token.actions.githubusercontent.com',
        'http://127.0.0.1:1',
        'http://169.254.169.254/computeMetadata/v1',
        '',
      ),
      fc.string(),
      fc.constant(undefined),
    );
    await fc.assert(
      fc.asyncProperty(
        iss,
        fc.constantFrom<'RS256' | 'none' | 'HS256'>('RS256', 'none', 'HS256'),
        fc.constantFrom<'current' | 'unpublished'>('current', 'unpublished'),
        fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
        fc.boolean(),
        async (i, alg, key, kid, viaSts) => {
          const claims = { iss: i, ...(kid === undefined ? {} : { jku: `${strangers[0]!.jwksUrl}?${kid}` }) };
          const token =
            kid === undefined
              ? await ghToken({ alg, key, claims })
              : await github.keys.sign(
                  github.claims({ audience: AUDIENCE, claims }),
                  { kid, jku: strangers[1]!.jwksUrl },
                  { alg, key },
                );
          const status = viaSts ? (await sts(token)).status : (await json(token)).status;
          expect([400, 401]).toContain(status);
        },
      ),
      { numRuns: 150 },
    );
    expect(requestCounts(everyone)).toEqual(before);
  });
});
