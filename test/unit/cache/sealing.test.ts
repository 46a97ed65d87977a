import { describe, expect, it } from 'vitest';
import {
  deriveCacheKeys,
  entryName,
  lockExpiry,
  lockName,
  lockValue,
  open,
  seal,
} from '../../../shared/cache/sealing.js';

const keys = deriveCacheKeys(new Uint8Array(32).fill(1));
const token = {
  token: 'ya29.secret-token',
  expiresAt: 1_800_000_000_000,
  scope: 'https://www.googleapis.com/auth/drive',
};

describe('sealing', () => {
  it('round-trips under the same associated data', () => {
    const sealed = seal(keys, 'name-a', token);
    expect(open(keys, 'name-a', sealed)).toEqual(token);
    expect(sealed).not.toContain('ya29');
    expect(Buffer.from(sealed, 'base64url').toString('latin1')).not.toContain('secret-token');
  });

  it('refuses a value moved under another name, tampered with, or sealed with another key', () => {
    const sealed = seal(keys, 'name-a', token);
    expect(open(keys, 'name-b', sealed)).toBeUndefined();
    const bytes = Buffer.from(sealed, 'base64url');
    bytes[20] = (bytes[20] ?? 0) ^ 1;
    expect(open(keys, 'name-a', bytes.toString('base64url'))).toBeUndefined();
    expect(open(deriveCacheKeys(new Uint8Array(32).fill(2)), 'name-a', sealed)).toBeUndefined();
    expect(open(keys, 'name-a', 'short')).toBeUndefined();
  });

  it('uses a fresh IV for every seal', () => {
    expect(seal(keys, 'n', token)).not.toBe(seal(keys, 'n', token));
  });

  it('names entries with a keyed hash that shows nothing of the input', () => {
    const name = entryName(keys, 'tb:v1:tok:', '["token","reporting@acme.iam.gserviceaccount.com"]');
    expect(name).toMatch(/^tb:v1:tok:[A-Za-z0-9_-]{43}$/);
    expect(name).toBe(entryName(keys, 'tb:v1:tok:', '["token","reporting@acme.iam.gserviceaccount.com"]'));
    expect(name).not.toBe(
      entryName(
        deriveCacheKeys(new Uint8Array(32).fill(2)),
        'tb:v1:tok:',
        '["token","reporting@acme.iam.gserviceaccount.com"]',
      ),
    );
    expect(() => deriveCacheKeys(new Uint8Array(16))).toThrow(/32 bytes/);
  });

  it('names locks under their own key: a lock name is not the entry name with another prefix', () => {
    const what = '["token","reporting@acme.iam.gserviceaccount.com"]';
    const entry = entryName(keys, 'tb:v1:tok:', what).slice('tb:v1:tok:'.length);
    const lock = lockName(keys, 'tb:v1:lock:', what).slice('tb:v1:lock:'.length);
    expect(lock).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(lock).not.toBe(entry);
  });

  it('honours only genuine lock values, for the name they were made for', () => {
    const value = lockValue(keys, 'lock-a', 'owner1', 1_800_000_000_000);
    expect(lockExpiry(keys, 'lock-a', value)).toBe(1_800_000_000_000);
    expect(lockExpiry(keys, 'lock-b', value)).toBeUndefined(); // moved under another lock
    expect(lockExpiry(deriveCacheKeys(new Uint8Array(32).fill(2)), 'lock-a', value)).toBeUndefined();
    // Another expiry with the same MAC, a forged MAC, garbage, a non-string.
    expect(lockExpiry(keys, 'lock-a', value.replace('1800000000000', '1900000000000'))).toBeUndefined();
    expect(lockExpiry(keys, 'lock-a', `owner1.1800000000000.${'A'.repeat(43)}`)).toBeUndefined();
    expect(lockExpiry(keys, 'lock-a', 'planted')).toBeUndefined();
    expect(lockExpiry(keys, 'lock-a', 42)).toBeUndefined();
  });
});
