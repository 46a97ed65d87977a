/**
 * A new version of the policy file reaches a running broker with no deploy
 * (docs/contract.md, "Policy"): granted and revoked within the refresh
 * interval; a version that does not validate changes nothing. In process.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import {
  BIGQUERY,
  BILLING,
  DRIVE,
  examplePolicy,
  post,
  REPORTING,
  type Stack,
  startStack,
} from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  stack = await startStack();
  broker = await stack.serveBroker('broker', { BROKER_POLICY_REFRESH_SECONDS: '1' });
});
afterAll(async () => stack?.close());

/**
 * Asks until the answer is `status` (or 10 s pass): each request after the refresh interval starts a read,
 * and a later one is decided by what it read. Returns the last answer.
 */
async function askUntil(status: number, body: unknown, token: string) {
  const until = Date.now() + 10_000;
  for (;;) {
    const r = await post(`${broker.url}/token`, body, { token });
    if (r.status === status || Date.now() > until) return r;
    await sleep(200);
  }
}

describe('the policy file, read again while the broker runs', () => {
  it('grants, refuses a broken version without a change, then revokes: each within the interval', async () => {
    const billing = await stack.callerToken(BILLING);
    const drive = { serviceAccount: REPORTING, scopes: [DRIVE] };
    expect((await post(`${broker.url}/token`, drive, { token: billing })).status).toBe(403);

    const granted = examplePolicy();
    (granted['grants'] as unknown[]).push({
      callers: [BILLING],
      serviceAccounts: [REPORTING],
      scopes: [DRIVE],
    });
    writeFileSync(stack.policyFile, JSON.stringify(granted));
    const allowed = await askUntil(200, drive, billing);
    expect(allowed.status).toBe(200);
    expect(allowed.json['access_token']).toEqual(expect.any(String));
    expect(broker.lines.some((l) => l.includes('a new version of the policy file took effect'))).toBe(true);

    // Broken: JSON that is not a policy. The version in force keeps deciding, and an ERROR says why.
    writeFileSync(stack.policyFile, JSON.stringify({ grants: 'none' }));
    const errorLine = () =>
      broker.lines
        .map((l) => JSON.parse(l) as { severity: string; message: string; problems?: string[] })
        .find((l) => l.severity === 'ERROR' && /not a valid policy/.test(l.message));
    for (const until = Date.now() + 10_000; errorLine() === undefined && Date.now() < until; ) {
      expect((await post(`${broker.url}/token`, drive, { token: billing })).status).toBe(200);
      await sleep(200);
    }
    expect(errorLine()?.problems).toContain('serviceAccounts: is required');
    expect((await post(`${broker.url}/token`, drive, { token: billing })).status).toBe(200);

    writeFileSync(stack.policyFile, JSON.stringify(examplePolicy()));
    expect((await askUntil(403, drive, billing)).status).toBe(403);
    // The rest of the policy kept working throughout.
    expect(
      (
        await post(
          `${broker.url}/token`,
          { serviceAccount: REPORTING, scopes: [BIGQUERY] },
          { token: billing },
        )
      ).status,
    ).toBe(200);
  });
});
