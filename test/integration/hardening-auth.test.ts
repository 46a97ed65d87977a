import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import {
  BIGQUERY,
  BILLING,
  CALENDAR,
  DRIVE,
  OPS,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  SYNC_JOB,
  startStack,
} from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;
/** The attacker: any caller with a valid ID token of its own (here billing, which may mint one thing only). */
let attacker: string;

beforeAll(async () => {
  stack = await startStack();
  // The setting under which the attack worked: the broker sits behind Cloud Run's IAM check.
  broker = await stack.serveBroker('broker', { BROKER_ALLOW_SIGNATURE_REMOVED_BY_GOOGLE: 'true' });
  attacker = await stack.callerToken(BILLING);
});
afterAll(async () => stack?.close());

/** What the attacker can write without any key: its own token's header and claims, with another email, unsigned. */
function forge(email: string): string {
  const [header, payload] = attacker.split('.') as [string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  const forged = Buffer.from(JSON.stringify({ ...claims, email })).toString('base64url');
  return `${header}.${forged}.SIGNATURE_REMOVED_BY_GOOGLE`;
}

/** The attack: its own valid token where Cloud Run checks it, the forgery where the broker reads it. */
const attack = (email: string) => ({
  token: forge(email),
  headers: { 'X-Serverless-Authorization': `Bearer ${attacker}` },
});

describe('a token without its signature next to X-Serverless-Authorization', () => {
  it('does not let a forged admin purge: the cached token is still served, nothing re-minted', async () => {
    const first = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: attacker },
    );
    expect(first.status).toBe(200);
    const issued = stack.google.stats.tokensIssued;

    const purge = await post(`${broker.url}/admin/purge`, { all: true }, attack(OPS));
    expect(purge.status).toBe(401);
    expect(purge.json['error']).toBe('invalid_token');
    expect(purge.json['purged']).toBeUndefined();

    const again = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [BIGQUERY] },
      { token: attacker },
    );
    expect(again.headers.get('cache-status')).toBe('broker; hit');
    expect(again.json['access_token']).toBe(first.json['access_token']);
    expect(stack.google.stats.tokensIssued).toBe(issued);
  });

  it("does not hand tenant blue's token to a forged platform caller", async () => {
    const issued = stack.google.stats.tokensIssued;
    for (const [path, body] of [
      ['/token', { tenant: 'blue', scopes: [DRIVE] }],
      ['/jwt', { tenant: 'blue', audience: 'https://drive.googleapis.com/' }],
      ['/idtoken', { tenant: 'blue', audience: 'https://drive.googleapis.com/' }],
    ] as const) {
      const r = await post(`${broker.url}${path}`, body, attack(PLATFORM));
      expect(r.status, path).toBe(401);
      expect(Object.keys(r.json).sort(), path).toEqual(['error', 'error_description']);
    }
    expect(stack.google.stats.tokensIssued).toBe(issued);
  });

  it('does not mint a delegated token as alice for a forged job', async () => {
    const issued = stack.google.stats.tokensIssued;
    const r = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [CALENDAR], subject: 'alice@acme.com' },
      attack(SYNC_JOB),
    );
    expect(r.status).toBe(401);
    expect(r.json['access_token']).toBeUndefined();
    expect(r.json['error_description']).toMatch(/X-Serverless-Authorization/);
    expect(stack.google.stats.tokensIssued).toBe(issued);
  });

  it('an empty X-Serverless-Authorization counts as present; the real Cloud Run case still works', async () => {
    const empty = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [CALENDAR], subject: 'alice@acme.com' },
      { token: forge(SYNC_JOB), headers: { 'X-Serverless-Authorization': '' } },
    );
    expect(empty.status).toBe(401);
    // What Cloud Run forwards when it checked Authorization itself: the same token, its signature removed.
    const [h, c] = (await stack.callerToken(SYNC_JOB)).split('.');
    const behindCloudRun = await post(
      `${broker.url}/token`,
      { serviceAccount: REPORTING, scopes: [CALENDAR], subject: 'alice@acme.com' },
      { token: `${h}.${c}.SIGNATURE_REMOVED_BY_GOOGLE` },
    );
    expect(behindCloudRun.status).toBe(200);
    expect(typeof behindCloudRun.json['access_token']).toBe('string');
  });
});
