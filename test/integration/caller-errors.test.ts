import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import {
  AUDIENCE,
  BIGQUERY,
  BILLING,
  BLUE,
  CALENDAR,
  examplePolicy,
  KEYLESS,
  OPS,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  SYNC_JOB,
  startStack,
} from './support/stack.js';

// Errors that help callers without helping attackers, through the real doors (JSON and sts) of a
// broker built in process: a token for another audience is told the audience the broker expects (it
// is not a secret: every caller must know it); a denial names the caller the broker verified, which is
// the caller's own identity; nothing else about the policy (other callers, accounts, grants, scopes,
// which dimension failed) is in any answer, and every denial of one caller reads the same.

let stack: Stack;
let broker: InProcessBroker;
beforeAll(async () => {
  stack = await startStack();
  broker = await stack.serveBroker('broker');
});
afterAll(async () => stack?.close());

/** Every email and scope the policy names, none of which a refusal may reveal (but the caller's own). */
function policySecrets(except: string): string[] {
  const text = JSON.stringify(examplePolicy());
  const emails = [...text.matchAll(/[\w.-]+@[\w.-]+/g)].map((m) => m[0]);
  const scopes = [...text.matchAll(/https:\/\/www\.googleapis\.com\/auth\/[\w.]+/g)].map((m) => m[0]);
  return [
    ...new Set([...emails, ...scopes, 'tenant-blue', 'secrets/reporting-key', 'keys/blue.json']),
  ].filter((s) => s !== except);
}

async function sts(subjectToken: string, audience: string, scope?: string) {
  const form = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: subjectToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
    audience,
    ...(scope === undefined ? {} : { scope }),
  });
  const res = await fetch(`${broker.url}/sts`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  return { status: res.status, json: (await res.json()) as Record<string, string> };
}

describe('a caller token for another audience', () => {
  it('is told the audience the broker expects, at the JSON door and at sts, and nothing about the policy', async () => {
    const wrong = await stack.callerToken(BILLING, { audience: 'https://someone-else.example' });
    const json = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: wrong },
    );
    expect(json.status).toBe(401);
    expect(json.json['error']).toBe('invalid_token');
    expect(json.json['error_description']).toContain(`the broker expects \`aud\` ${AUDIENCE}`);
    const exchanged = await sts(wrong, `//token-broker/serviceAccounts/${REPORTING}`);
    expect(exchanged.status).toBe(400);
    expect(exchanged.json['error']).toBe('invalid_grant');
    expect(exchanged.json['error_description']).toContain(`the broker expects \`aud\` ${AUDIENCE}`);
    // Before the caller is known, nothing of the policy: not even the account asked for is echoed.
    for (const text of [json.json['error_description'], exchanged.json['error_description']])
      for (const s of policySecrets('')) expect(text).not.toContain(s);
  });
});

describe('a denial', () => {
  // One caller's requests that the policy refuses for different reasons: no grant at all, an unknown
  // account, a scope not granted, a subject not granted, a tenant, an operation not granted.
  const refusals: Array<[string, string, Record<string, unknown>]> = [
    ['an account it has no grant for', '/token', { serviceAccount: KEYLESS, scopes: [CALENDAR] }],
    [
      'an account that does not exist',
      '/token',
      { serviceAccount: 'nobody@acme.iam.gserviceaccount.com', scopes: [BIGQUERY] },
    ],
    ['a scope its grant lacks', '/token', { serviceAccount: REPORTING, scopes: [CALENDAR] }],
    [
      'a subject its grant lacks',
      '/token',
      { serviceAccount: REPORTING, scopes: [BIGQUERY], subject: 'alice@acme.com' },
    ],
    ['a tenant', '/token', { tenant: 'blue', scopes: [BIGQUERY] }],
    [
      'an operation its grant lacks',
      '/idtoken',
      { serviceAccount: REPORTING, audience: 'https://x.example/' },
    ],
  ];

  it.each(refusals)(
    'for %s: 403 access_denied naming the verified caller, and the same text as every other denial',
    async (_name, path, body) => {
      const r = await post(`${broker.url}${path}`, body, { token: await stack.callerToken(BILLING) });
      expect(r.status).toBe(403);
      expect(r.json['error']).toBe('access_denied');
      const text = r.json['error_description'] as string;
      expect(text).toBe(
        `The broker policy does not allow ${BILLING} this request (service account or tenant, scopes, subject, audience or operation). Ask the broker operators for a grant.`,
      );
      for (const s of policySecrets(BILLING)) expect(text).not.toContain(s);
      expect(Object.keys(r.json).sort()).toEqual(['error', 'error_description']);
    },
  );

  it('at sts: 400 invalid_target with the same text, naming the caller; another caller sees its own name', async () => {
    const billing = await sts(
      await stack.callerToken(BILLING),
      `//token-broker/serviceAccounts/${REPORTING}`,
      CALENDAR,
    );
    expect(billing.status).toBe(400);
    expect(billing.json['error']).toBe('invalid_target');
    expect(billing.json['error_description']).toContain(`does not allow ${BILLING} this request`);
    const unknown = await sts(
      await stack.callerToken(BILLING),
      '//token-broker/serviceAccounts/nobody@acme.iam.gserviceaccount.com',
    );
    expect(unknown.json).toEqual(billing.json);
    for (const s of policySecrets(BILLING)) expect(billing.json['error_description']).not.toContain(s);

    const other = await sts(await stack.callerToken(OPS), `//token-broker/tenants/blue`, BIGQUERY);
    expect(other.json['error_description']).toContain(`does not allow ${OPS} this request`);
    for (const s of [BILLING, PLATFORM, SYNC_JOB, BLUE])
      expect(other.json['error_description']).not.toContain(s);
  });

  it('writes the failed dimension to the audit line only, where operators read it', async () => {
    await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [CALENDAR] },
      { token: await stack.callerToken(BILLING) },
    );
    await expect
      .poll(() => broker.lines.filter((l) => l.includes('"decision":"deny"') && l.includes(CALENDAR)).length)
      .toBeGreaterThan(0);
    const line =
      broker.lines.filter((l) => l.includes('"decision":"deny"') && l.includes(CALENDAR)).pop() ?? '';
    expect(JSON.parse(line).audit).toMatchObject({
      caller: BILLING,
      decision: 'deny',
      reason: expect.any(String),
    });
  });
});
