import { randomBytes } from 'node:crypto';
import { CircuitBreaker } from '../circuit-breaker.js';
import { Lru } from '../lru.js';
import { SETTINGS } from '../settings.js';
import { SingleFlight } from '../single-flight.js';
import {
  type CacheKeys,
  deriveCacheKeys,
  entryName,
  lockExpiry,
  lockName,
  lockValue,
  open,
  seal,
} from './sealing.js';
import { type CacheKeyParts, cacheKeyString, type PurgeSelector, type Token } from './types.js';

/**
 * The few Redis commands the shared cache uses: a narrow seam that the real
 * `@upstash/redis` client satisfies, and so does any stand-in.
 */
export interface RedisSeam {
  /** Rejects with {@link MalformedReply} when the reply cannot be used (too large for the client, say). */
  mget(...keys: string[]): Promise<unknown[]>;
  set(key: string, value: string, options: { px: number; nx?: true }): Promise<unknown>;
  incr(key: string): Promise<number>;
  eval(script: string, keys: string[], args: string[]): Promise<unknown>;
}

/**
 * Generations an entry was written under (both are bound into its sealing,
 * never stored beside it). A generation is `<counter>.<random>`; a purge
 * replaces it with a higher counter and fresh random bytes, which makes every
 * older entry undecryptable for every instance.
 */
export interface Generations {
  readonly all: string;
  readonly account: string;
}

/** What a lookup found: the token (if any, and still decryptable) and the generations now in force. */
export interface Lookup {
  readonly token: Token | undefined;
  readonly gens: Generations;
  /** Asked with `withLock`: until when a genuine mint lock is held by another instance (epoch ms), if one is. */
  readonly lockedUntil?: number | undefined;
}

/**
 * Redis answered, but with a reply the client cannot use: larger than it
 * reads, or not the shape asked for. Someone who can write to Redis can
 * cause it (a 2 MiB value under a generation's name); it counts as values
 * that are malformed, never as the cache being down (docs/threat-model.md).
 */
export class MalformedReply extends Error {
  override readonly name = 'MalformedReply';
}

/** What a malformed reply's values read as: no string, so no generation, entry or lock accepts it. */
const MALFORMED: unique symbol = Symbol('malformed');

/** A cache failure, reported once per failing call; the cache never throws to its caller. */
export type CacheFailure = {
  op: 'lookup' | 'store' | 'lock' | 'unlock' | 'purge' | 'generations';
  /** `malformed`: Redis answered with a reply that cannot be used; it was read as malformed values. */
  reason: 'timeout' | 'error' | 'circuit_open' | 'malformed';
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
  /** First retry of a lock release that failed (see `unlock`). */
  releaseRetryMs?: number;
}

// Compare-and-delete: release a lock only if we still own it.
const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** A well-formed generation: a counter, and 16 random bytes that nobody can guess. */
const GENERATION = /^(\d{1,15})\.[A-Za-z0-9_-]{22}$/;
/** Generations leave Redis after 30 days unused; a missing one is re-created fresh (a purge of its entries). */
const GENERATION_TTL_MS = 30 * 24 * 3600 * 1000;
/** Lock releases waiting to be tried again at once, at most (each is one timer; past this, the lock expires on its own). */
const MAX_PENDING_RELEASES = 1000;

function counterOf(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = GENERATION.exec(value);
  return m === null ? undefined : Number(m[1]);
}

/**
 * The shared cache (L2) over Upstash Redis. Entry names are HMACs of the
 * normalised request and values are AES-256-GCM sealed with the name and
 * generations as associated data, so a dump shows no token, email, scope or
 * generation. Every call has a timeout and goes through a circuit breaker; a
 * failure is reported to `onFailure` and answered as "nothing cached", never
 * thrown.
 *
 * Against someone who can write to Redis (docs/threat-model.md): a missing,
 * malformed, or lower generation than this instance has seen counts as a
 * purge and is replaced by a fresh one, so deleting, evicting or rolling back
 * a generation never brings a purged entry back here; lock names come from
 * their own key, and lock values carry an HMAC and an expiry, so a planted,
 * moved or expired lock makes nobody wait.
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
  readonly #releaseRetryMs: number;

  constructor(options: SharedCacheOptions) {
    this.#redis = options.redis;
    this.#keys = deriveCacheKeys(options.cacheKey);
    this.#timeoutMs = options.timeoutMs ?? SETTINGS.BROKER_CACHE_TIMEOUT_MS.default;
    this.#breaker = options.breaker ?? new CircuitBreaker();
    this.#now = options.now ?? Date.now;
    this.#onFailure = options.onFailure ?? (() => {});
    this.#prefix = options.prefix ?? 'tb:v1:';
    this.#genAll = `${this.#prefix}gen:all`;
    this.#releaseRetryMs = options.releaseRetryMs ?? 1000;
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

  // Lock names: an HMAC under their own key, so they cannot be derived from entry names.
  readonly #lockNames = new Lru<string, string>(10_000);

  #lock(parts: CacheKeyParts): string {
    const id = cacheKeyString(parts);
    let name = this.#lockNames.get(id);
    if (name === undefined) {
      name = lockName(this.#keys, `${this.#prefix}lock:`, id);
      this.#lockNames.set(id, name);
    }
    return name;
  }

  /** The highest generation counter this instance has seen, per generation name. */
  readonly #highest = new Lru<string, number>(10_000);

  /** Whether `value` can be the generation `name` is under now; remembers it when it is the highest seen. */
  #acceptable(name: string, value: unknown): value is string {
    const n = counterOf(value);
    if (n === undefined) return false;
    const highest = this.#highest.get(name);
    if (highest !== undefined && n < highest) return false;
    if (highest === undefined || n > highest) this.#highest.set(name, n);
    return true;
  }

  /** A new generation for `name`: above every counter seen, with fresh random bytes. */
  #fresh(name: string, current: unknown): string {
    const n = Math.max(this.#highest.get(name) ?? 0, counterOf(current) ?? 0) + 1;
    return `${n}.${randomBytes(16).toString('base64url')}`;
  }

  /**
   * The generations in force, from the values just read for `names` (all,
   * account). A missing, malformed or lower value than this instance has
   * seen is replaced by a fresh one (created if missing, unless another
   * instance just did): it matches no entry, so it purges rather than
   * restores. `null` when what was read could not be settled (the repair
   * failed, or the values were changed again meanwhile): whatever was
   * cached before must then be treated as purged.
   */
  async #settle(
    op: CacheFailure['op'],
    names: readonly [string, string],
    values: readonly unknown[],
  ): Promise<Generations | null> {
    const [all, account] = [values[0], values[1]];
    if (this.#acceptable(names[0], all) && this.#acceptable(names[1], account)) return { all, account };
    const written = await this.#call(op, () =>
      Promise.all(
        names.map((name, i) => {
          const current = values[i];
          if (counterOf(current) !== undefined && this.#acceptable(name, current)) return undefined;
          const options =
            current === null || current === undefined
              ? { px: GENERATION_TTL_MS, nx: true as const }
              : { px: GENERATION_TTL_MS };
          return this.#redis.set(name, this.#fresh(name, current), options);
        }),
      ),
    );
    if (written === undefined) return null;
    const again = await this.#mget(op, names);
    if (again === undefined) return null;
    const [all2, account2] = [again[0], again[1]];
    if (!this.#acceptable(names[0], all2) || !this.#acceptable(names[1], account2)) return null;
    return { all: all2, account: account2 };
  }

  #genNames(account: string): readonly [string, string] {
    return [this.#genAll, this.#genAccount(account)];
  }

  /** The expiry of a genuine, unexpired lock value for `name`; undefined for none, a forged or an expired one. */
  #lockedUntil(name: string, value: unknown): number | undefined {
    const until = lockExpiry(this.#keys, name, value);
    return until !== undefined && until > this.#now() ? until : undefined;
  }

  /**
   * MGET through `#call`. A reply that cannot be used reads as one
   * malformed value per key: a generation that is malformed is replaced
   * (a purge), an entry that is malformed is a miss, a lock that is
   * malformed is taken over. So a writer who plants an oversized value
   * purges, and never makes the cache look down (which would let memory
   * keep serving).
   */
  #mget(op: CacheFailure['op'], keys: readonly string[]): Promise<unknown[] | undefined> {
    return this.#call(op, async () => {
      try {
        const values = await this.#redis.mget(...keys);
        if (Array.isArray(values) && values.length === keys.length) return values;
      } catch (error) {
        if (!(error instanceof MalformedReply)) throw error;
      }
      this.#onFailure({ op, reason: 'malformed' });
      return keys.map(() => MALFORMED);
    });
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

  /**
   * Reads the entry and the generations in force in one round trip (and,
   * `withLock`, whether a genuine lock on it is held). Undefined when the
   * cache failed.
   */
  async lookup(parts: CacheKeyParts, withLock = false): Promise<Lookup | undefined> {
    const name = this.#entry(parts);
    const gens = this.#genNames(parts.account);
    const lock = withLock ? this.#lock(parts) : undefined;
    const values = await this.#mget('lookup', lock === undefined ? [name, ...gens] : [name, ...gens, lock]);
    if (values === undefined) return undefined;
    if (values[0] === MALFORMED) {
      // Which value was bad is unknown: read the generations on their own (repaired if they are the bad
      // ones), and count the entry as missing, to be overwritten by the next store.
      const current = await this.#mget('lookup', gens);
      if (current === undefined) return undefined;
      const settled = await this.#settle('lookup', gens, current);
      if (settled === null) return undefined;
      return lock === undefined
        ? { token: undefined, gens: settled }
        : { token: undefined, gens: settled, lockedUntil: undefined };
    }
    const settled = await this.#settle('lookup', gens, values.slice(1, 3));
    if (settled === null) return undefined; // nothing that was cached can be trusted: as if the cache failed
    // The generations are bound into the sealing: an entry from before a purge does not open.
    const value = values[0];
    const token = typeof value === 'string' ? open(this.#keys, aad(name, settled), value) : undefined;
    if (lock === undefined) return { token, gens: settled };
    return { token, gens: settled, lockedUntil: this.#lockedUntil(lock, values[3]) };
  }

  /**
   * Opens the connection to Upstash ahead of the first request (a TLS
   * handshake to a remote database costs tens of milliseconds), with one
   * cheap read. A failure is reported like any other, so an unreachable
   * cache shows in the logs at start.
   */
  async warm(): Promise<void> {
    await this.#mget('generations', [this.#genAll]);
  }

  /**
   * Reads only the generations in force for an account. Undefined when the
   * cache could not be read; `null` when it was read but its generations
   * could not be settled (then treat what is cached as purged).
   */
  generations(account: string): Promise<Generations | null | undefined> {
    // Every request that finds its entry due for a check asks at once: one read serves them all.
    return this.#genReads.run(account, async () => {
      const names = this.#genNames(account);
      const values = await this.#mget('generations', names);
      if (values === undefined) return undefined;
      return this.#settle('generations', names, values);
    });
  }

  readonly #genReads = new SingleFlight<Generations | null | undefined>();

  /** Stores a token under the generations it was looked up with, until it really expires. */
  async store(parts: CacheKeyParts, gens: Generations, token: Token): Promise<void> {
    const px = token.expiresAt - this.#now();
    if (px <= 0) return;
    const name = this.#entry(parts);
    const value = seal(this.#keys, aad(name, gens), token);
    await this.#call('store', () => this.#redis.set(name, value, { px }));
  }

  /**
   * Takes the mint lock for `parts` (`SET NX PX` with an authenticated
   * value). Returns the owner's value when taken; `heldUntil` when another
   * instance genuinely holds it; undefined when the cache failed. A lock
   * value that is not genuine, or whose own expiry has passed (forged,
   * moved, replayed), is taken over at once.
   */
  async lock(
    parts: CacheKeyParts,
    ttlMs: number,
  ): Promise<{ owner: string } | { heldUntil: number } | undefined> {
    const name = this.#lock(parts);
    const owner = lockValue(this.#keys, name, randomBytes(16).toString('base64url'), this.#now() + ttlMs);
    const result = await this.#call('lock', () => this.#redis.set(name, owner, { px: ttlMs, nx: true }));
    if (result === undefined) return undefined;
    if (result === 'OK') return { owner };
    const current = await this.#mget('lock', [name]);
    if (current === undefined) return undefined;
    const heldUntil = this.#lockedUntil(name, current[0]);
    if (heldUntil !== undefined) return { heldUntil };
    const taken = await this.#call('lock', () => this.#redis.set(name, owner, { px: ttlMs }));
    return taken === undefined ? undefined : { owner };
  }

  /**
   * Releases the lock if this owner still holds it (compare-and-delete).
   * When the cache does not answer, the release is tried again later (after
   * `releaseRetryMs`, then twice as long each time) until the lock expires on
   * its own: a lock left behind would make every instance that wants this
   * token wait out a mint that is over (up to its wait deadline).
   */
  async unlock(parts: CacheKeyParts, owner: string): Promise<void> {
    await this.#release(this.#lock(parts), owner, this.#releaseRetryMs);
  }

  async #release(name: string, owner: string, retryMs: number): Promise<void> {
    const released = await this.#call('unlock', () => this.#redis.eval(UNLOCK, [name], [owner]));
    if (released !== undefined) return;
    const until = lockExpiry(this.#keys, name, owner);
    if (
      until === undefined ||
      this.#now() + retryMs >= until ||
      this.#pendingReleases >= MAX_PENDING_RELEASES
    )
      return;
    this.#pendingReleases++;
    setTimeout(() => {
      this.#pendingReleases--;
      void this.#release(name, owner, retryMs * 2);
    }, retryMs).unref();
  }

  #pendingReleases = 0;

  /**
   * Makes matching entries unreachable on every instance: each generation is
   * replaced by a fresh one, above every counter seen. Returns false if the
   * cache failed.
   */
  async purge(selector: PurgeSelector): Promise<boolean> {
    const names = 'all' in selector ? [this.#genAll] : selector.accounts.map((a) => this.#genAccount(a));
    if (names.length === 0) return true;
    const current = await this.#mget('purge', names);
    if (current === undefined) return false;
    const results = await Promise.all(
      names.map(async (name, i) => {
        const value = this.#fresh(name, current[i]);
        const ok = await this.#call('purge', () => this.#redis.set(name, value, { px: GENERATION_TTL_MS }));
        if (ok !== undefined) this.#acceptable(name, value);
        return ok;
      }),
    );
    return results.every((r) => r !== undefined);
  }
}

/** The associated data an entry is sealed under: its name and the generations in force. */
function aad(name: string, gens: Generations): string {
  return `${name}\n${gens.all}\n${gens.account}`;
}
