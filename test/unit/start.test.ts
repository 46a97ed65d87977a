import { describe, expect, it } from 'vitest';
import { compactLogLine } from '../../infra/start/log-lines.js';
import { DEFAULT_PORT, PORT_OFFSETS, parseStartOptions } from '../../infra/start/options.js';

// `npm start`'s flags and the short log lines it streams.

describe('parseStartOptions', () => {
  it('puts the broker on --port and each stand-in on its fixed offset; 0 makes every port random', () => {
    const d = parseStartOptions([]);
    expect(d).toEqual({
      once: false,
      ports: expect.objectContaining({ broker: DEFAULT_PORT, google: DEFAULT_PORT + 1 }),
    });
    const p = parseStartOptions(['--port', '9000', '--policy', 'my.json', '--once']);
    expect(p.once).toBe(true);
    expect(p.policyFile).toBe('my.json');
    for (const [service, offset] of Object.entries(PORT_OFFSETS))
      expect(p.ports[service as keyof typeof PORT_OFFSETS]).toBe(9000 + offset);
    expect(new Set(Object.values(p.ports)).size).toBe(Object.keys(PORT_OFFSETS).length);
    expect(Object.values(parseStartOptions(['--port', '0']).ports)).toEqual(
      Object.values(PORT_OFFSETS).map(() => 0),
    );
  });

  it.each([
    [['--port', '80']],
    [['--port', '65535']],
    [['--port', 'x']],
    [['--policy', '']],
    [['--prot', '9000']],
  ])('refuses %j with the usage line', (argv) => {
    expect(() => parseStartOptions(argv)).toThrow(
      /usage: npm start -- \[--port N\] \[--policy FILE\] \[--dir DIR\] \[--once\]/,
    );
  });
});

describe('compactLogLine', () => {
  it('makes a request line short: status, path, operation, caller, target, subject, scopes, decision, reason, cache', () => {
    const line = JSON.stringify({
      httpRequest: { requestMethod: 'POST', requestUrl: '/sts', status: 400 },
      audit: {
        operation: 'token',
        caller: 'billing@p.iam.gserviceaccount.com',
        serviceAccount: 'reporting@p.iam.gserviceaccount.com',
        subject: 'alice@acme.com',
        scopes: ['https://www.googleapis.com/auth/cloud-platform', 'openid'],
        decision: 'deny',
        reason: 'scope_not_granted',
      },
      severity: 'WARNING',
      time: '2026-12-07T01:00:21.328Z',
    });
    expect(compactLogLine(line)).toBe(
      '01:00:21 400 POST /sts token billing@p.iam.gserviceaccount.com → reporting@p.iam.gserviceaccount.com as alice@acme.com [cloud-platform openid] deny scope_not_granted',
    );
    expect(
      compactLogLine(
        JSON.stringify({
          httpRequest: { status: 401, requestMethod: 'POST', requestUrl: '/token' },
          audit: { tenant: 'blue', reason: 'wrong_audience' },
        }),
      ),
    ).toBe('401 POST /token (caller not verified) → tenant:blue wrong_audience');
  });

  it('keeps other lines to severity and message, and passes text through', () => {
    expect(
      compactLogLine('{"severity":"INFO","message":"broker started","time":"2026-12-07T01:00:00.000Z"}'),
    ).toBe('01:00:00 INFO broker started');
    expect(compactLogLine('Serving function...')).toBe('Serving function...');
    expect(compactLogLine('null')).toBe('null');
  });
});
