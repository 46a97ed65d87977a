import { Lru } from '../lru.js';
import { SETTINGS } from '../settings.js';
import { cacheKeyString, type PurgeSelector, type Token, type TokenCache } from './types.js';

interface Entry {
  readonly account: string;
  readonly value: Token;
}

/** Options of the in-process cache. */
export interface MemoryCacheOptions {
  maxEntries?: number;
  now?: () => number;
}

/**
 * A bounded in-process token cache (L1). Entries leave when they really
 * expire, or when evicted. Synchronous: a hit costs no promise.
 */
export function createMemoryCache(options: MemoryCacheOptions = {}): TokenCache {
  const lru = new Lru<string, Entry>(options.maxEntries ?? SETTINGS.BROKER_L1_MAX_ENTRIES.default);
  const now = options.now ?? Date.now;
  return {
    get(key) {
      const id = cacheKeyString(key);
      const entry = lru.get(id);
      if (entry === undefined) return undefined;
      if (entry.value.expiresAt <= now()) {
        lru.delete(id);
        return undefined;
      }
      return entry.value;
    },
    set(key, value) {
      lru.set(cacheKeyString(key), { account: key.account, value });
    },
    delete(key) {
      lru.delete(cacheKeyString(key));
    },
    purge(selector: PurgeSelector) {
      if ('all' in selector) {
        const n = lru.size;
        lru.clear();
        return n;
      }
      const accounts = new Set(selector.accounts);
      return lru.deleteWhere((_, entry) => accounts.has(entry.account));
    },
  };
}
