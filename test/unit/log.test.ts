import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createLogger, fingerprint, redact, traceFields } from '../../shared/log.js';

const pem = (
  JSON.parse(readFileSync(new URL('../fixtures/service-account.json', import.meta.url), 'utf8')) as {
    private_key: string;
  }
).private_key;

describe('structured logs', () => {
  it('writes one Cloud Logging JSON object per line', () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) }).child({ requestId: 'r1' });
    log.log('WARNING', 'hello', { httpRequest: { status: 403 } });
    expect(JSON.parse(lines[0]!)).toMatchObject({
      severity: 'WARNING',
      message: 'hello',
      requestId: 'r1',
      httpRequest: { status: 403 },
    });
  });

  it('redacts anything shaped like a key, a JWT, an access token or a bearer credential', () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l) });
    log.log('ERROR', `oops ${pem}`, {
      nested: {
        jwt: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl',
        token: 'ya29.a0AfB_byC-secret',
        header: 'Bearer abc.def',
      },
    });
    const line = lines[0]!;
    expect(line).not.toContain('PRIVATE KEY');
    expect(line).not.toContain(pem.split('\n')[3]!);
    expect(line).not.toContain('eyJzdWIiOiIxIn0');
    expect(line).not.toContain('ya29.');
    expect(line).not.toContain('abc.def');
    expect(redact('plain text stays')).toBe('plain text stays');
  });

  it('redacts every line the full patterns would, though it scans clean lines only once', () => {
    const secretish = fc.constantFrom(
      '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----',
      '-----BEGIN RSA PRIVATE KEY-----\nMIIB',
      'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln',
      'eyJabcd.efgh',
      'ya29.a0AfB_secret',
      'Bearer abc.def',
      'bearer\tXYZ',
      'BEARER q',
      '"quoted"\\',
      '',
    );
    const text = fc.array(fc.oneof(fc.string(), secretish), { maxLength: 6 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(text, text, (message, field) => {
        let line = '';
        createLogger({ write: (l) => (line = l) }).log('INFO', message, { nested: { field } });
        const parsed = JSON.parse(line) as { message: string; nested: { field: string } };
        expect(parsed.message).toBe(redact(message));
        expect(parsed.nested.field).toBe(redact(field));
      }),
      { numRuns: 500 },
    );
  });

  it('fingerprints tokens and parses trace headers', () => {
    expect(fingerprint('ya29.x')).toMatch(/^sha256:[A-Za-z0-9_-]{16}$/);
    expect(fingerprint('ya29.x')).not.toBe(fingerprint('ya29.y'));
    expect(traceFields('105445aa7843bc8bf206b12000100000/1;o=1', 'acme')).toEqual({
      'logging.googleapis.com/trace': 'projects/acme/traces/105445aa7843bc8bf206b12000100000',
      'logging.googleapis.com/spanId': '0000000000000001',
      'logging.googleapis.com/trace_sampled': true,
    });
    expect(traceFields('garbage', 'acme')).toEqual({});
  });
});
