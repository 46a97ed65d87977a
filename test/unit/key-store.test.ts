import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { SecretSource } from '../../shared/adapters/secret-source.js';
import { BrokerError } from '../../shared/errors.js';
import { createKeyStore } from '../../shared/key-store.js';

const keyJson = readFileSync(new URL('../fixtures/service-account.json', import.meta.url), 'utf8');
const EMAIL = 'fixture@fixture-project.iam.gserviceaccount.com';

function source(script: Array<string | BrokerError>) {
  const s: SecretSource & { reads: number } = {
    reads: 0,
    async read() {
      s.reads++;
      const next = script.length > 1 ? script.shift()! : script[0]!;
      if (next instanceof BrokerError) throw next;
      return new TextEncoder().encode(next);
    },
  };
  return s;
}

describe('key store', () => {
  it('reads a key once within the TTL, and again after it', async () => {
    let now = 0;
    const src = source([keyJson]);
    const store = createKeyStore({ secrets: src, ttlMs: 1000, now: () => now });
    const a = await store.get('file:k', EMAIL);
    const b = await store.get('file:k', EMAIL);
    expect(src.reads).toBe(1);
    expect(b).toBe(a);
    now = 1001;
    const c = await store.get('file:k', EMAIL);
    expect(src.reads).toBe(2);
    expect(c.signingKey).toBe(a.signingKey); // same key version: imported once
  });

  it('keeps serving a key in memory while the secret store is down', async () => {
    let now = 0;
    const down = new BrokerError('upstream_unavailable', 'down');
    const src = source([keyJson, down]);
    const store = createKeyStore({ secrets: src, ttlMs: 1000, now: () => now });
    await store.get('file:k', EMAIL);
    now = 5000;
    expect((await store.get('file:k', EMAIL)).key.clientEmail).toBe(EMAIL);
    store.invalidate('file:k');
    await expect(store.get('file:k', EMAIL)).rejects.toBe(down);
  });

  it('refuses a key that belongs to another account, or is malformed', async () => {
    const store = createKeyStore({ secrets: source([keyJson]) });
    await expect(store.get('file:k', 'other@p.iam.gserviceaccount.com')).rejects.toMatchObject({
      upstreamError: 'invalid_key',
    });
    const bad = createKeyStore({ secrets: source(['{"type":"service_account"}']) });
    await expect(bad.get('file:k', EMAIL)).rejects.toMatchObject({
      code: 'upstream_rejected',
      upstreamError: 'invalid_key',
    });
  });

  it('loads concurrently requested keys once', async () => {
    const src = source([keyJson]);
    const store = createKeyStore({ secrets: src });
    await Promise.all(Array.from({ length: 20 }, () => store.get('file:k', EMAIL)));
    expect(src.reads).toBe(1);
  });
});
