import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { logLineOf } from './support/raw-http.js';
import {
  BIGQUERY,
  BILLING,
  DRIVE,
  examplePolicy,
  PLATFORM,
  post,
  REPORTING,
  type Stack,
  startStack,
} from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;

beforeAll(async () => {
  stack = await startStack();
  broker = await stack.serveBroker('broker', {
    GOOGLE_CLOUD_PROJECT: 'acme',
    K_SERVICE: 'broker',
    K_REVISION: 'broker-00007',
  });
});
afterAll(async () => stack?.close());

/**
 * Opens a raw socket, writes `head` at once and then `trickle` one byte every
 * `everyMs`; resolves with the seconds until the broker closed the
 * connection (or `giveUpMs` passed) and what it answered.
 */
function slowClient(
  head: string,
  trickle: string,
  everyMs: number,
  giveUpMs: number,
): Promise<{ seconds: number; closedByBroker: boolean; answer: string }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(broker.port, '127.0.0.1');
    let answer = '';
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const done = (closedByBroker: boolean) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ seconds: (Date.now() - started) / 1000, closedByBroker, answer });
    };
    const giveUp = setTimeout(() => done(false), giveUpMs);
    socket.on('data', (d) => {
      answer += d.toString('latin1');
    });
    socket.on('close', () => done(true));
    socket.on('error', () => {});
    socket.on('connect', () => {
      socket.write(head);
      timer = setInterval(() => {
        if (i < trickle.length && !socket.destroyed) socket.write(trickle[i++]!);
      }, everyMs);
    });
  });
}

describe('slow clients are cut', () => {
  it('one that trickles its headers within about 5 s, one that trickles its body within about 10 s', async () => {
    const [headers, body] = await Promise.all([
      slowClient(
        'POST /token HTTP/1.1\r\nHost: broker\r\n',
        `X-Slow: ${'a'.repeat(200)}\r\n\r\n`,
        250,
        20_000,
      ),
      slowClient(
        'POST /token HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n',
        `{"pad":"${'x'.repeat(390)}"}`,
        250,
        20_000,
      ),
    ]);
    console.log(`slow clients: headers cut after ${headers.seconds} s, body after ${body.seconds} s`);
    expect(headers.closedByBroker).toBe(true);
    expect(headers.seconds).toBeLessThan(8);
    expect(body.closedByBroker).toBe(true);
    expect(body.seconds).toBeLessThan(13);
    expect(headers.answer).toMatch(/^HTTP\/1\.1 408/);
    expect(body.answer).toMatch(/^HTTP\/1\.1 408/);
  }, 30_000);
});

describe('log lines', () => {
  it('keep a 5000-digit span id out, and take a valid traceparent', async () => {
    const billing = await stack.callerToken(BILLING);
    const body = { serviceAccount: REPORTING, scopes: [BIGQUERY] };
    const huge = await post(`${broker.url}/token`, body, {
      token: billing,
      headers: { 'X-Cloud-Trace-Context': `105445aa7843bc8bf206b12000100000/${'9'.repeat(5000)};o=1` },
    });
    const hugeLine = await logLineOf(broker.lines, huge.headers.get('x-request-id'));
    expect(hugeLine).toMatchObject({ message: 'token served' });
    expect(JSON.stringify(hugeLine)).not.toMatch(/9{30}|logging\.googleapis\.com\/(trace|spanId)/);

    const traced = await post(`${broker.url}/token`, body, {
      token: billing,
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    });
    expect(await logLineOf(broker.lines, traced.headers.get('x-request-id'))).toMatchObject({
      'logging.googleapis.com/trace': 'projects/acme/traces/4bf92f3577b34da6a3ce929d0e0e4736',
      'logging.googleapis.com/spanId': '00f067aa0ba902b7',
      'logging.googleapis.com/trace_sampled': true,
      'logging.googleapis.com/labels': { function: 'broker', operation: 'token' },
    });

    // The edge's own lines (here a 413) get the same trace fields.
    const big = await post(`${broker.url}/token`, undefined, {
      raw: JSON.stringify({ pad: 'x'.repeat(70 * 1024) }),
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' },
    });
    expect(big.status).toBe(413);
    expect(await logLineOf(broker.lines, big.headers.get('x-request-id'))).toMatchObject({
      severity: 'NOTICE',
      'logging.googleapis.com/trace': 'projects/acme/traces/4bf92f3577b34da6a3ce929d0e0e4736',
      'logging.googleapis.com/trace_sampled': false,
      httpRequest: { status: 413, requestSize: '0' },
      audit: { error: 'request_too_large' },
    });
  });

  it('write a failure as an error event Error Reporting collects, with no secret in it', async () => {
    stack.google.injectFault({ kind: 'status', status: 503, body: '<html>down</html>' }, 10);
    const platform = await stack.callerToken(PLATFORM);
    const r = await post(`${broker.url}/token`, { tenant: 'green', scopes: [DRIVE] }, { token: platform });
    stack.google.reset();
    expect(r.status).toBe(503);
    const line = await logLineOf(broker.lines, r.headers.get('x-request-id'));
    expect(line).toMatchObject({
      severity: 'ERROR',
      '@type': 'type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent',
      serviceContext: { service: 'broker', version: 'broker-00007' },
      'logging.googleapis.com/labels': { function: 'broker', operation: 'token' },
    });
    expect(typeof line?.['message']).toBe('string');
    expect(JSON.stringify(line)).not.toContain(platform.split('.')[2]!);
  });

  it('warn once at start when a grant is open to any caller, and not otherwise', async () => {
    const policy = examplePolicy() as { grants: Record<string, unknown>[] };
    policy.grants.push({ callers: ['*'], serviceAccounts: [REPORTING], scopes: [BIGQUERY] });
    const file = join(stack.dir, 'open-policy.json');
    writeFileSync(file, JSON.stringify(policy));
    const open = await stack.serveBroker('token', { BROKER_POLICY_FILE: file });
    await new Promise((r) => setTimeout(r, 200));
    const warnings = (b: InProcessBroker) =>
      b.lines.filter((l) => l.includes('"WARNING"') && l.includes('callers [\\"*\\"]'));
    expect(warnings(open)).toHaveLength(1);
    expect(JSON.parse(warnings(open)[0]!)).toMatchObject({
      severity: 'WARNING',
      message: expect.stringContaining(`grants[${policy.grants.length - 1}]`),
    });
    expect(warnings(broker)).toHaveLength(0);
  });
});
