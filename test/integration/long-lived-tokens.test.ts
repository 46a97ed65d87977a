import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import {
  auditLines,
  CLOUD_PLATFORM,
  ETL_MAIN,
  type ExternalStack,
  LONG_JOB,
  NOT_EXTENDED,
  SIX_HOURS,
  startExternalStack,
} from './support/external.js';
import { AUDIENCE, BIGQUERY, KEYLESS, post, REPORTING } from './support/stack.js';

// Tokens for jobs longer than an hour (docs/contract.md, "Long-lived tokens"): a keyless account whose
// policy entry allows 6 hours, and which the organisation policy lists at IAM, gets a 6-hour token through
// IAM's `lifetime`; it is cached and serves the requests it covers. Every refusal: none serves a token.

let x: ExternalStack;
let broker: InProcessBroker;
let job: string;

beforeAll(async () => {
  x = await startExternalStack();
  broker = x.broker;
  // A GitHub-like nightly job asks: its ID token is the caller's credential.
  job = await x.github.mint({ audience: AUDIENCE, lifetimeSeconds: 3600 });
});
afterAll(async () => x?.stack.close());

const token = (body: Record<string, unknown>, caller = job) =>
  post(`${broker.url}/token`, body, { token: caller });
const iam = () => x.stack.google.stats.iamRequests.generateAccessToken;
const minted = () => [x.stack.google.stats.tokensIssued, x.stack.google.stats.iamRequests.total];

async function tokeninfo(t: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${x.stack.google.tokeninfoUrl}?access_token=${encodeURIComponent(t)}`);
  return (await res.json()) as Record<string, unknown>;
}

describe('a 6-hour keyless token', () => {
  it('is minted through IAM with lifetime 21600s, and Google says it lives 6 hours', async () => {
    const before = iam();
    const r = await token({ serviceAccount: LONG_JOB, scopes: [CLOUD_PLATFORM], lifetimeSeconds: SIX_HOURS });
    expect(r.status, r.text).toBe(200);
    expect(r.headers.get('cache-status')).toBe('broker; fwd=miss');
    expect(r.json['expires_in']).toBeGreaterThan(SIX_HOURS - 5);
    expect(r.json['expires_in']).toBeLessThanOrEqual(SIX_HOURS);
    const info = await tokeninfo(r.json['access_token'] as string);
    expect(info).toMatchObject({ email: LONG_JOB });
    expect(Number(info['expires_in'])).toBeGreaterThan(SIX_HOURS - 5);
    expect(iam() - before).toBe(1);
    expect(auditLines(broker, ETL_MAIN).at(-1)).toMatchObject({
      account: LONG_JOB,
      accountMode: 'keyless',
      lifetimeSeconds: SIX_HOURS,
      cache: 'miss',
    });
  });

  it('is cached, and serves the requests it covers: another 6-hour one, a 2-hour one, one without lifetimeSeconds', async () => {
    const before = iam();
    const first = await token({
      serviceAccount: LONG_JOB,
      scopes: [CLOUD_PLATFORM],
      lifetimeSeconds: SIX_HOURS,
    });
    for (const extra of [{ lifetimeSeconds: SIX_HOURS }, { lifetimeSeconds: 7200 }, {}]) {
      const r = await token({ serviceAccount: LONG_JOB, scopes: [CLOUD_PLATFORM], ...extra });
      expect(r.headers.get('cache-status'), JSON.stringify(extra)).toBe('broker; hit');
      expect(r.json['access_token']).toBe(first.json['access_token']);
    }
    expect(iam() - before).toBe(0);
  });

  it('a Kubernetes-like caller asking for 6 hours of the same account shares it', async () => {
    const k8s = await x.k8s.mint({
      namespace: 'batch',
      serviceAccount: 'nightly',
      audiences: ['token-broker'],
    });
    const r = await token(
      { serviceAccount: LONG_JOB, scopes: [CLOUD_PLATFORM], lifetimeSeconds: SIX_HOURS },
      k8s,
    );
    expect(r.headers.get('cache-status')).toBe('broker; hit');
  });
});

describe('refusals: none serves a token; those of the policy cost no IAM call', () => {
  it.each([
    [{ serviceAccount: KEYLESS, scopes: [BIGQUERY], lifetimeSeconds: 7200 }, /maximum of 3600 seconds/],
    [{ serviceAccount: REPORTING, scopes: [BIGQUERY], lifetimeSeconds: 3601 }, /only for keyless accounts/],
    [
      { serviceAccount: LONG_JOB, scopes: [CLOUD_PLATFORM], lifetimeSeconds: SIX_HOURS + 1 },
      /maximum of 21600/,
    ],
    [{ serviceAccount: LONG_JOB, scopes: [CLOUD_PLATFORM], lifetimeSeconds: 43_201 }, /from 1 to 43200/],
    [{ serviceAccount: LONG_JOB, scopes: [CLOUD_PLATFORM], lifetimeSeconds: 0 }, /from 1 to 43200/],
  ])('400 invalid_request: %j', async (body, text) => {
    const before = minted();
    const r = await token(body);
    expect(r.status).toBe(400);
    expect(r.json['error']).toBe('invalid_request');
    expect(r.json['error_description']).toMatch(text);
    expect(r.json).not.toHaveProperty('access_token');
    expect(minted()).toEqual(before);
  });

  it("a caller without a grant for the account gets the 403, and learns nothing of the account's maximum", async () => {
    const other = await x.github.mint({ audience: AUDIENCE, run: { owner: 'acme', repo: 'web' } });
    const r = await token(
      { serviceAccount: LONG_JOB, scopes: [CLOUD_PLATFORM], lifetimeSeconds: 43_200 },
      other,
    );
    expect(r.status).toBe(403);
    expect(r.json['error_description']).not.toMatch(/21600|maximum/);
  });

  it('IAM refuses the lifetime for an account the organisation policy does not list: 502 naming the constraint', async () => {
    const before = x.stack.google.stats.tokensIssued;
    const calls = iam();
    const r = await token({
      serviceAccount: NOT_EXTENDED,
      scopes: [CLOUD_PLATFORM],
      lifetimeSeconds: SIX_HOURS,
    });
    expect(r.status).toBe(502);
    expect(r.json).toMatchObject({ error: 'upstream_rejected', upstream_error: 'INVALID_ARGUMENT' });
    expect(r.json['error_description']).toContain(
      'constraints/iam.allowServiceAccountCredentialLifetimeExtension',
    );
    expect(r.json['error_description']).not.toContain(NOT_EXTENDED);
    expect(r.json).not.toHaveProperty('access_token');
    expect(iam() - calls).toBe(1);
    expect(x.stack.google.stats.tokensIssued).toBe(before);
    const audit = auditLines(broker, ETL_MAIN).at(-1)!;
    expect(audit).toMatchObject({ reason: 'lifetime_not_allowed', upstreamError: 'INVALID_ARGUMENT' });
    expect(audit['remedy']).toContain(NOT_EXTENDED);
    expect(audit['remedy']).toContain('constraints/iam.allowServiceAccountCredentialLifetimeExtension');
    // An hour is still fine for it.
    expect((await token({ serviceAccount: NOT_EXTENDED, scopes: [CLOUD_PLATFORM] })).status).toBe(200);
  });
});
