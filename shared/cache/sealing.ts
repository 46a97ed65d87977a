import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import type { Token } from './types.js';

/**
 * Keys derived from `BROKER_CACHE_KEY` (HKDF-SHA256, one `info` per use), so
 * no key serves two purposes: the key that names entries never encrypts,
 * lock names cannot be computed from entry names (nor the other way round),
 * and only holders of the cache key can write a lock value that others honour.
 */
export interface CacheKeys {
  readonly names: Buffer;
  readonly sealing: Buffer;
  readonly lockNames: Buffer;
  readonly lockValues: Buffer;
}

/** Derives the entry-naming, sealing and lock keys from the 32-byte cache key. */
export function deriveCacheKeys(cacheKey: Uint8Array): CacheKeys {
  if (cacheKey.length !== 32) throw new RangeError('the cache key must be 32 bytes');
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', cacheKey, Buffer.alloc(0), info, 32));
  return {
    names: derive('gcp-token-broker/v1/entry-names'),
    sealing: derive('gcp-token-broker/v1/aes-256-gcm'),
    lockNames: derive('gcp-token-broker/v1/lock-names'),
    lockValues: derive('gcp-token-broker/v1/lock-values'),
  };
}

/** A keyed name for `what`: HMAC-SHA256, base64url. Shows nothing of what it names. */
export function entryName(keys: CacheKeys, prefix: string, what: string): string {
  return `${prefix}${createHmac('sha256', keys.names).update(what).digest('base64url')}`;
}

/** A lock's name for `what`, under its own key: knowing entry names does not give it. */
export function lockName(keys: CacheKeys, prefix: string, what: string): string {
  return `${prefix}${createHmac('sha256', keys.lockNames).update(what).digest('base64url')}`;
}

/**
 * A lock value: `<owner>.<expires at, epoch ms>.<HMAC over the lock's name,
 * owner and expiry>`. Waiters honour it only when the HMAC checks and the
 * expiry is still ahead, so a forged value, a value moved from another lock,
 * or a genuine one replayed after its time makes nobody wait.
 */
export function lockValue(keys: CacheKeys, name: string, owner: string, expiresAt: number): string {
  return `${owner}.${expiresAt}.${lockMac(keys, name, owner, expiresAt)}`;
}

/** The expiry of a genuine lock value for `name`, or undefined when it is not one. */
export function lockExpiry(keys: CacheKeys, name: string, value: unknown): number | undefined {
  if (typeof value !== 'string' || value.length > 200) return undefined;
  const m = /^([A-Za-z0-9_-]{1,64})\.(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (m === null) return undefined;
  const [, owner = '', expiry = '', mac = ''] = m;
  const expiresAt = Number(expiry);
  const expected = Buffer.from(lockMac(keys, name, owner, expiresAt));
  const given = Buffer.from(mac);
  return given.length === expected.length && timingSafeEqual(given, expected) ? expiresAt : undefined;
}

function lockMac(keys: CacheKeys, name: string, owner: string, expiresAt: number): string {
  return createHmac('sha256', keys.lockValues).update(`${name}\n${owner}\n${expiresAt}`).digest('base64url');
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Encrypts a token with AES-256-GCM; `aad` (the entry name and generations)
 * is bound to the ciphertext, so a value copied under another name, or read
 * under other generations, does not decrypt. Returns `base64url(iv || ciphertext || tag)`.
 */
export function seal(keys: CacheKeys, aad: string, token: Token): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keys.sealing, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const plaintext = Buffer.from(
    JSON.stringify({ t: token.token, e: token.expiresAt, s: token.scope }),
    'utf8',
  );
  const sealed = Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  plaintext.fill(0);
  return sealed.toString('base64url');
}

/** Decrypts what `seal` wrote under the same `aad`; undefined when it was tampered with, moved or is malformed. */
export function open(keys: CacheKeys, aad: string, value: string): Token | undefined {
  const sealed = Buffer.from(value, 'base64url');
  if (sealed.length < IV_BYTES + TAG_BYTES + 2) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', keys.sealing, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plaintext = Buffer.concat([
      decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)),
      decipher.final(),
    ]);
    const parsed = JSON.parse(plaintext.toString('utf8')) as { t?: unknown; e?: unknown; s?: unknown };
    plaintext.fill(0);
    if (typeof parsed.t !== 'string' || typeof parsed.e !== 'number') return undefined;
    return typeof parsed.s === 'string'
      ? { token: parsed.t, expiresAt: parsed.e, scope: parsed.s }
      : { token: parsed.t, expiresAt: parsed.e };
  } catch {
    return undefined;
  }
}
