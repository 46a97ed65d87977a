import type { SecretSource } from './adapters/secret-source.js';
import { BrokerError } from './errors.js';
import { importSigningKey, type SigningKey } from './jwt/sign.js';
import { Lru } from './lru.js';
import { parseServiceAccountKey, type ServiceAccountKey } from './service-account-key.js';
import { SETTINGS } from './settings.js';
import { SingleFlight } from './single-flight.js';

/** A service-account key read from its secret, parsed and imported once. */
export interface LoadedKey {
  readonly key: ServiceAccountKey;
  readonly signingKey: SigningKey;
}

export interface KeyStoreOptions {
  secrets: SecretSource;
  /** How long a key read from its secret is used before it is read again. */
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  loaded: LoadedKey;
  fetchedAt: number;
}

/** Keys in memory, bounded, with a TTL; see `createKeyStore`. */
export interface KeyStore {
  /**
   * Returns the key for `ref`, which must belong to `email`. Reads the secret
   * when the key is missing or older than the TTL; while the secret store is
   * unreachable, a key already in memory keeps serving. Throws the secret
   * source's BrokerErrors, and `upstream_rejected` (`invalid_key`) for a key
   * that is malformed or belongs to another account.
   */
  get(ref: string, email: string): Promise<LoadedKey>;
  /** Forgets the key for `ref`, so the next `get` reads the secret again (e.g. after Google rejects its signature). */
  invalidate(ref: string): void;
}

/** Creates the in-memory key store in front of a secret source. */
export function createKeyStore(options: KeyStoreOptions): KeyStore {
  const ttlMs = options.ttlMs ?? SETTINGS.BROKER_KEY_TTL_SECONDS.default * 1000;
  const now = options.now ?? Date.now;
  const entries = new Lru<string, Entry>(options.maxEntries ?? 256);
  const loads = new SingleFlight<LoadedKey>();
  // One imported CryptoKey per key version, so a re-read of an unchanged secret costs no PEM parse.
  const imported = new Lru<string, { pem: string; signingKey: SigningKey }>(options.maxEntries ?? 256);

  async function load(ref: string, email: string): Promise<LoadedKey> {
    const data = await options.secrets.read(ref);
    let key: ServiceAccountKey;
    try {
      key = parseServiceAccountKey(data);
    } finally {
      data.fill(0);
    }
    if (key.clientEmail !== email) {
      throw new BrokerError(
        'upstream_rejected',
        "The key stored for this account belongs to another service account. Store this account's own key.",
        { upstreamError: 'invalid_key' },
      );
    }
    const version = `${key.clientEmail}/${key.privateKeyId}`;
    const cached = imported.get(version);
    const signingKey =
      cached !== undefined && cached.pem === key.privateKey
        ? cached.signingKey
        : await importSigningKey(key.privateKey);
    imported.set(version, { pem: key.privateKey, signingKey });
    const loaded = { key, signingKey };
    entries.set(ref, { loaded, fetchedAt: now() });
    return loaded;
  }

  return {
    async get(ref, email) {
      const entry = entries.get(ref);
      if (entry && entry.loaded.key.clientEmail === email && now() - entry.fetchedAt < ttlMs)
        return entry.loaded;
      try {
        return await loads.run(`${ref}\n${email}`, () => load(ref, email));
      } catch (err) {
        // Stale-if-error: the secret store is down, and the key we hold is still this account's.
        if (
          entry &&
          entry.loaded.key.clientEmail === email &&
          err instanceof BrokerError &&
          err.code === 'upstream_unavailable'
        ) {
          return entry.loaded;
        }
        throw err;
      }
    },
    invalidate(ref) {
      const entry = entries.get(ref);
      entries.delete(ref);
      if (entry) imported.delete(`${entry.loaded.key.clientEmail}/${entry.loaded.key.privateKeyId}`);
    },
  };
}
