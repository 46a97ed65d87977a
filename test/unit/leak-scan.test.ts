import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanForLeaks } from '../global-setup.js';

describe('the leak scan of the test run', () => {
  it('finds an issued token, a key fragment or a token-shaped string in a log line, and passes clean lines', () => {
    const dir = mkdtempSync(join(tmpdir(), 'scan-'));
    const fragment = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7';
    writeFileSync(
      join(dir, 'secrets-1.txt'),
      `opaque-token-value-0123456789\n-----BEGIN PRIVATE KEY-----\\n${fragment}\\n-----END PRIVATE KEY-----\\n\n`,
    );
    writeFileSync(
      join(dir, 'lines-1.log'),
      '{"message":"token served","audit":{"tokenFingerprint":"sha256:abc"}}\n',
    );
    expect(scanForLeaks(dir)).toEqual({ lines: 1, secrets: 2, leaks: [] });
    for (const leak of [
      'opaque-token-value-0123456789',
      fragment,
      'ya29.a0AfB_byCsecretsecret',
      'eyJhbGciOiJSUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJlMTIz',
    ]) {
      writeFileSync(join(dir, 'lines-2.log'), `{"message":"oops ${leak}"}\n`);
      expect(scanForLeaks(dir).leaks.length, leak).toBeGreaterThan(0);
    }
  });
});
