/**
 * Refusals that say the right thing, against a broker built in this
 * process: media types as RFC 9110 spells them, each door's own media type
 * checked before its body is read, and a purge of what the policy lacks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InProcessBroker, serveInProcess } from '../../infra/in-process-broker.js';
import { BIGQUERY, BILLING, OPS, post, REPORTING, type Stack, startStack } from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;

beforeAll(async () => {
  stack = await startStack();
  broker = await serveInProcess(stack.env);
});
afterAll(async () => {
  await broker?.stop();
  await stack?.close();
});

describe('media types', () => {
  it('takes a quoted charset, in any case, and refuses another charset with 415', async () => {
    const billing = await stack.callerToken(BILLING);
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    for (const type of ['application/json; charset="utf-8"', 'Application/JSON; Charset="UTF-8"']) {
      const r = await post(`${broker.url}/token`, body, {
        token: billing,
        headers: { 'Content-Type': type },
      });
      expect(r.status, type).toBe(200);
      expect(r.json['access_token']).toEqual(expect.any(String));
    }
    const latin = await post(`${broker.url}/token`, body, {
      token: billing,
      headers: { 'Content-Type': 'application/json; charset="iso-8859-1"' },
    });
    expect(latin.status).toBe(415);
  });

  it('answers JSON sent to the token exchange with 415, valid or not, before reading it', async () => {
    for (const raw of ['{"grant_type":"x"}', '{not json']) {
      const r = await post(`${broker.url}/sts`, undefined, { raw });
      expect(r.status, raw).toBe(415);
      expect(r.json['error']).toBe('unsupported_media_type');
    }
    // And a form sent to a JSON door, the same way.
    const form = await post(`${broker.url}/token`, undefined, {
      raw: 'a=b',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(form.status).toBe(415);
  });
});

describe('purge of a target the policy lacks', () => {
  it('is a 404 for an admin, and the one 403 for anyone else', async () => {
    const ops = await stack.callerToken(OPS);
    for (const target of [{ tenant: 'nobody' }, { serviceAccount: 'nobody@acme.iam.gserviceaccount.com' }]) {
      const r = await post(`${broker.url}/admin/purge`, target, { token: ops });
      expect(r.status).toBe(404);
      expect(r.json).toMatchObject({ error: 'not_found' });
      expect(r.json['purged']).toBeUndefined();
    }
    const billing = await stack.callerToken(BILLING);
    const denied = await post(`${broker.url}/admin/purge`, { tenant: 'nobody' }, { token: billing });
    const known = await post(`${broker.url}/admin/purge`, { tenant: 'blue' }, { token: billing });
    expect(denied.status).toBe(403);
    expect(denied.json).toEqual(known.json);
  });
});
