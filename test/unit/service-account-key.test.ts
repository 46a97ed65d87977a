import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../shared/errors.js';
import { parseServiceAccountKey } from '../../shared/service-account-key.js';

const text = readFileSync(new URL('../fixtures/service-account.json', import.meta.url), 'utf8');
const good = JSON.parse(text) as Record<string, unknown>;
const pemBody = (good['private_key'] as string).split('\n')[5]!;

function error(data: string): BrokerError {
  try {
    parseServiceAccountKey(data);
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    return err as BrokerError;
  }
  throw new Error('expected a BrokerError');
}

describe('parseServiceAccountKey', () => {
  it('reads a Google key file', () => {
    const key = parseServiceAccountKey(new TextEncoder().encode(text));
    expect(key).toMatchObject({
      type: 'service_account',
      projectId: 'fixture-project',
      privateKeyId: '0123456789abcdef0123456789abcdef01234567',
      clientEmail: 'fixture@fixture-project.iam.gserviceaccount.com',
      clientId: '100000000000000000001',
    });
  });

  it.each([
    ['type', 'user', '"type" must be "service_account"'],
    ['client_email', 'not-an-email', '"client_email" is not a valid email'],
    ['client_email', undefined, '"client_email" is missing'],
    ['private_key', 'garbage', '"private_key" is not a PKCS#8 PEM private key'],
    ['private_key', undefined, '"private_key" is missing'],
    ['private_key_id', 42, '"private_key_id" is missing or not a string'],
    ['project_id', '', '"project_id" is missing'],
    ['client_id', undefined, '"client_id" is missing'],
  ])('names the bad field %s', (field, value, expected) => {
    const err = error(JSON.stringify({ ...good, [field]: value }));
    expect(err.code).toBe('upstream_rejected');
    expect(err.upstreamError).toBe('invalid_key');
    expect(err.message).toContain(expected);
  });

  it('never puts key material in the error', () => {
    for (const bad of [
      `${text.slice(0, -5)}`, // truncated JSON: the parser's own message would quote it
      JSON.stringify({ ...good, type: 'x' }),
      JSON.stringify({ ...good, private_key: `${good['private_key']}junk` }),
      JSON.stringify([good]),
    ]) {
      const err = error(bad);
      expect(err.message).not.toContain(pemBody);
      expect(err.message).not.toContain('PRIVATE KEY');
      expect(JSON.stringify(err)).not.toContain(pemBody);
      expect(String(err.cause ?? '')).not.toContain(pemBody);
    }
  });

  it('rejects bytes that are not UTF-8', () => {
    expect(error(String.fromCharCode(0xff)).code).toBe('upstream_rejected');
    expect(() => parseServiceAccountKey(new Uint8Array([0xff, 0xfe]))).toThrow(/not valid JSON/);
  });
});
