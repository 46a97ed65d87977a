import { randomBytes } from 'node:crypto';
import { CircuitBreaker } from '../circuit-breaker.js';
import { Lru } from '../lru.js';
import { type CacheKeys, deriveCacheKeys, entryName, open, seal } from './sealing.js';
import { type CachedToken, type CacheKeyParts, cacheKeyString, type PurgeSelector } from './types.js';

/**
 * The few Redis commands the shared cache uses: a narrow seam that the real
 * `@upstash/redis` client satisfies, and so does any stand-in.
 */
export interface RedisSeam {
  mget(...keys: string[]): Promise<unknown[]>;
  set(key: string, value: string, options: { px: number; nx?: true }): Promise<unknown>;
  incr(key: string): Promise<number>;
  eval(script: string, keys: string[], args: string[]): Promise<unknown>;
}

/** Generations an entry was written under; a purge bumps one, which makes older entries unreachable. */
export interface Generations {
  readonly all: string;
  readonly account: string;
}

/** What a lookup found: the token (if any, and still decryptable) and the generations now in force. */
export interface Lookup {
  readonly token: CachedToken | undefined;
  readonly gens: Generations;
}

/** A cache failure, reported once per failing call; the cache never throws to its caller. */
export type CacheFailure = {
  op: 'lookup' | 'store' | 'lock' | 'unlock' | 'purge' | 'generations';
  reason: 'timeout' | 'error' | 'circuit_open';
  error?: unknown;
};

export interface SharedCacheOptions {
  redis: RedisSeam;
  /** 32 bytes: `BROKER_CACHE_KEY`. */
  cacheKey: Uint8Array;
  /** Budget of one cache call. */
  timeoutMs?: number;
  breaker?: CircuitBreaker;
  now?: () => number;
  onFailure?: (failure: CacheFailure) => void;
  /** Namespace of every key the broker writes. */
  prefix?: string;
}

// Compare-and-delete: release a lock only if we still own it.
const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * The shared cache (L2) over Upstash Redis. Entry names are HMACs of the
 * normalised request and values are AES-256-GCM sealed with the name and
 * generations as associated data, so a dump shows no token, email or scope.
 * Every call has a timeout and goes through a circuit breaker; a failure is
 * reported to `onFailure` and answered as "nothing cached", never thrown.
 */
export class SharedTokenCache {
  readonly #redis: RedisSeam;
  readonly #keys: CacheKeys;
  readonly #timeoutMs: number;
  readonly #breaker: CircuitBreaker;
  readonly #now: () => number;
  readonly #onFailure: (failure: CacheFailure) => void;
  readonly #prefix: string;
  readonly #genAll: string;

  constructor(options: SharedCacheOptions) {
    this.#redis = options.redis;
    this.#keys = deriveCacheKeys(options.cacheKey);
    this.#timeoutMs = options.timeoutMs ?? 250;
    this.#breaker = options.breaker ?? new CircuitBreaker();
    this.#now = options.now ?? Date.now;
    this.#onFailure = options.onFailure ?? (() => {});
    this.#prefix = options.prefix ?? 'tb:v1:';
    this.#genAll = `${this.#prefix}gen:all`;
  }

  /** The circuit breaker's state, for health and tests. */
  get state(): string {
    return this.#breaker.state;
  }

  // Entry names are HMACs of fixed inputs: computed once per token kind or account, not per request.
  readonly #names = new Lru<string, string>(10_000);

  #name(prefix: string, what: string): string {
    const id = `${prefix}\n${what}`;
    let name = this.#names.get(id);
    if (name === undefined) {
      name = entryName(this.#keys, `${this.#prefix}${prefix}`, what);
      this.#names.set(id, name);
    }
    return name;
  }

  #genAccount(account: string): string {
    return this.#name('gen:', `account\n${account}`);
  }

  #entry(parts: CacheKeyParts): string {
    return this.#name('tok:', cacheKeyString(parts));
  }

  #lock(parts: CacheKeyParts): string {
    return this.#name('lock:', cacheKeyString(parts));
  }

  async #call<T>(op: CacheFailure['op'], fn: () => Promise<T>): Promise<T | undefined> {
    if (!this.#breaker.allow()) {
      this.#onFailure({ op, reason: 'circuit_open' });
      return undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#timeoutMs);
    });
    const call = fn();
    try {
      const result = await Promise.race([call, timeout]);
      if (result === 'timeout') {
        call.catch(() => {}); // it may still settle; nobody waits for it
        this.#breaker.failure();
        this.#onFailure({ op, reason: 'timeout' });
        return undefined;
      }
      this.#breaker.success();
      return result;
    } catch (error) {
      this.#breaker.failure();
      this.#onFailure({ op, reason: 'error', error });
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads the entry and the generations in force in one round trip. Undefined when the cache failed. */
  async lookup(parts: CacheKeyParts): Promise<Lookup | undefined> {
    const name = this.#entry(parts);
    const values = await this.#call('lookup', () =>
      this.#redis.mget(name, this.#genAll, this.#genAccount(parts.account)),
    );
    if (values === undefined) return undefined;
    const [value, all, account] = values;
    const gens: Generations = { all: String(all ?? 0), account: String(account ?? 0) };
    if (typeof value !== 'string') return { token: undefined, gens };
    // The value is `<gen all>.<gen account>.<sealed>`; the generations are also bound into the AAD.
    const [vAll, vAccount, sealed] = value.split('.', 3);
    if (vAll !== gens.all || vAccount !== gens.account || sealed === undefined)
      return { token: undefined, gens };
    const token = open(this.#keys, `${name}\n${gens.all}\n${gens.account}`, sealed);
    return { token, gens };
  }

  /**
   * Opens the connection to Upstash ahead of the first request (a TLS
   * handshake to a remote database costs tens of milliseconds), with one
   * cheap read. A failure is reported like any other, so an unreachable
   * cache shows in the logs at start.
   */
  async warm(): Promise<void> {
    await this.#call('generations', () => this.#redis.mget(this.#genAll));
  }

  /** Reads only the generations in force for an account. */
  async generations(account: string): Promise<Generations | undefined> {
    const values = await this.#call('generations', () =>
      this.#redis.mget(this.#genAll, this.#genAccount(account)),
    );
    if (values === undefined) return undefined;
    return { all: String(values[0] ?? 0), account: String(values[1] ?? 0) };
  }

  /** Stores a token under the generations it was looked up with, until it really expires. */
  async store(parts: CacheKeyParts, gens: Generations, token: CachedToken): Promise<void> {
    const px = token.expiresAt - this.#now();
    if (px <= 0) return;
    const name = this.#entry(parts);
    const value = `${gens.all}.${gens.account}.${seal(this.#keys, `${name}\n${gens.all}\n${gens.account}`, token)}`;
    await this.#call('store', () => this.#redis.set(name, value, { px }));
  }

  /**
   * Takes the mint lock for `parts` (`SET NX PX` with a random owner).
   * Returns the owner when taken, `held` when another instance holds it, and
   * undefined when the cache failed.
   */
  async lock(parts: CacheKeyParts, ttlMs: number): Promise<{ owner: string } | 'held' | undefined> {
    const owner = randomBytes(16).toString('base64url');
    const result = await this.#call('lock', () =>
      this.#redis.set(this.#lock(parts), owner, { px: ttlMs, nx: true }),
    );
    if (result === undefined) return undefined;
    return result === 'OK' ? { owner } : 'held';
  }

  /** Releases the lock if this owner still holds it (compare-and-delete). */
  async unlock(parts: CacheKeyParts, owner: string): Promise<void> {
    await this.#call('unlock', () => this.#redis.eval(UNLOCK, [this.#lock(parts)], [owner]));
  }

  /** Makes matching entries unreachable on every instance by bumping their generation. Returns false if the cache failed. */
  async purge(selector: PurgeSelector): Promise<boolean> {
    const keys = 'all' in selector ? [this.#genAll] : selector.accounts.map((a) => this.#genAccount(a));
    const results = await Promise.all(keys.map((key) => this.#call('purge', () => this.#redis.incr(key))));
    return results.every((r) => r !== undefined);
  }
}
