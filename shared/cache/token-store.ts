import { BrokerError } from '../errors.js';
import { isServable, isServableStale, requiredLifetimeSeconds } from '../lifetime.js';
import { SETTINGS } from '../settings.js';
import { SingleFlight } from '../single-flight.js';
import type { Generations, SharedTokenCache } from './shared-cache.js';
import {
  type CacheKeyParts,
  type CacheOutcome,
  cacheKeyString,
  type PurgeSelector,
  type Served,
  type StorePurge,
  type Token,
  type TokenCache,
} from './types.js';

export interface TokenStoreOptions {
  /** The in-process cache (L1). */
  l1: TokenCache;
  /** The shared cache (L2), when configured. */
  l2?: SharedTokenCache | undefined;
  refreshSkewSeconds: number;
  /** Width of the refresh-ahead window before the skew: a hit inside it also re-mints in the background. */
  refreshAheadSeconds?: number;
  /** How long an L1 entry is trusted before its generations are checked again against L2 (purge propagation). */
  generationCheckMs?: number;
  /**
   * With L2 configured, the longest an L1 entry is served past its last
   * successful generation check (or its mint) while L2 cannot be read; then
   * it is dropped and the token minted afresh, so a purge made meanwhile
   * reaches this instance within this bound (docs/contract.md, "Purge").
   */
  purgeBoundMs?: number;
  /** TTL of the cross-instance mint lock. */
  lockTtlMs?: number;
  /**
   * How long an instance waits for another instance's mint before it mints
   * itself (never longer than that instance's lock lasts; forged or expired
   * locks are not waited for at all).
   */
  waitDeadlineMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Called when a background refresh fails (the token in hand keeps serving). */
  onBackgroundError?: (err: unknown) => void;
}

interface L1Entry extends Token {
  /**
   * Generations the token was seen under in L2, and when they were last
   * checked. With L2 configured, an entry without generations was minted
   * while L2 was unreachable: it is dropped as soon as L2 answers, since
   * nothing tells whether a purge happened after it was minted.
   */
  readonly gens?: Generations;
  readonly checkedAt?: number;
}

/**
 * The broker's caches as one: L1 in process, L2 shared. Serves a servable
 * token from either; otherwise mints once: one promise per process
 * (single-flight) and one mint across instances (a `SET NX PX` lock, the
 * others waiting with backoff for the result up to a deadline, then minting
 * themselves). A hit inside the refresh-ahead window re-mints in the
 * background, so callers do not see the miss. When a mint fails because
 * Google is unreachable, a token with real life left is served stale.
 */
export class TokenStore {
  readonly #o: Required<Omit<TokenStoreOptions, 'l2'>> & { l2: SharedTokenCache | undefined };
  readonly #flights = new SingleFlight<Served>();
  /** Bumped by every purge here: a mint or lookup that started before a purge does not fill L1 after it. */
  #purges = 0;

  constructor(options: TokenStoreOptions) {
    this.#o = {
      refreshAheadSeconds: SETTINGS.BROKER_REFRESH_AHEAD_SECONDS.default,
      generationCheckMs: 1000,
      purgeBoundMs: SETTINGS.BROKER_PURGE_BOUND_SECONDS.default * 1000,
      lockTtlMs: 15_000,
      waitDeadlineMs: 5000,
      now: Date.now,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      onBackgroundError: () => {},
      ...options,
      l2: options.l2,
    };
  }

  /**
   * Serves the token for `parts` with at least `minLifetimeSeconds` (and the
   * skew) left, and one that covers `lifetimeSeconds` when the request asks
   * it (`requiredLifetimeSeconds`), minting it with `mint` when no cache has
   * one. Throws what `mint` throws, unless a stale token can be served instead.
   */
  async serve(
    parts: CacheKeyParts,
    asked: number,
    mint: () => Promise<Token>,
    lifetimeSeconds?: number,
  ): Promise<Served> {
    const o = this.#o;
    const minLifetimeSeconds = requiredLifetimeSeconds(asked, lifetimeSeconds, o.refreshSkewSeconds);
    const seen = await this.#fromL1(parts);
    if (seen && isServable(seen.expiresAt, o.now(), o.refreshSkewSeconds, minLifetimeSeconds)) {
      this.#maybeRefreshAhead(parts, seen, mint);
      return served(seen, 'hit');
    }
    // A request for a lifetime mints apart from the others: a shorter token minted for them would not cover it.
    const key =
      lifetimeSeconds === undefined
        ? cacheKeyString(parts)
        : `${cacheKeyString(parts)}\nlifetime=${lifetimeSeconds}`;
    try {
      // One L2 lookup, and at most one mint, per key and process, however many requests wait for it.
      let result = await this.#flights.run(key, () => this.#resolve(parts, seen, minLifetimeSeconds, mint));
      if (
        result.cache === 'hit' &&
        !isServable(result.expiresAt, o.now(), o.refreshSkewSeconds, minLifetimeSeconds)
      ) {
        // Joined a flight that found a token too short for this request's minimum: mint a newer one.
        const short: Token = result;
        result = await this.#flights.run(`${key}\nlonger`, () =>
          this.#mintOnce(parts, short, minLifetimeSeconds, mint),
        );
      }
      return result;
    } catch (err) {
      // Stale-if-error (docs/contract.md): Google is unreachable, and the token we hold still has real life
      // left, and no purge has made it unreachable since (checked against L2 now, whatever L1 last saw).
      const held = (seen ?? o.l1.get(parts)) as L1Entry | undefined;
      if (
        held &&
        err instanceof BrokerError &&
        err.code === 'upstream_unavailable' &&
        isServableStale(held.expiresAt, o.now(), minLifetimeSeconds) &&
        (await this.#notPurged(parts, held))
      ) {
        return served(held, 'stale');
      }
      throw err;
    }
  }

  /**
   * Whether `entry` is still current: no purge since it was cached. Without
   * L2 a purge deletes it from L1, so what L1 holds is current. With L2 the
   * generations are read now; when L2 cannot answer, the entry is not
   * trusted (a purge may have happened that this instance cannot see). A
   * purged entry is deleted, so nothing serves it later.
   */
  async #notPurged(parts: CacheKeyParts, entry: L1Entry): Promise<boolean> {
    const l2 = this.#o.l2;
    if (l2 === undefined) return this.#o.l1.get(parts) === entry;
    if (entry.gens === undefined) return false;
    const gens = await l2.generations(parts.account);
    if (gens === undefined) return false;
    if (gens !== null && sameGenerations(gens, entry.gens)) return true;
    this.#forget(parts, entry);
    return false;
  }

  /** Deletes the L1 entry for `parts` if it is still `entry` (a newer one may have replaced it meanwhile). */
  #forget(parts: CacheKeyParts, entry: Token): void {
    if (this.#o.l1.get(parts) === entry) this.#o.l1.delete(parts);
  }

  /** Fills L1, unless a purge happened here since `purges` was read (the token may predate it). */
  #remember(parts: CacheKeyParts, entry: L1Entry, purges: number): void {
    if (this.#purges === purges) this.#o.l1.set(parts, entry);
  }

  /**
   * Mints a token newer than `stale` for `parts` (once per process and, with
   * L2, across instances: one that another instance minted meanwhile is taken
   * instead) and caches it in place of `stale`. For a token an upstream
   * refused although it had life left (STS refusing a source token).
   */
  async renew(parts: CacheKeyParts, stale: Token, mint: () => Promise<Token>): Promise<Served> {
    return this.#flights.run(`${cacheKeyString(parts)}\nrenew`, () => this.#mintOnce(parts, stale, 0, mint));
  }

  /**
   * Drops matching tokens here and, with L2, makes them unreachable for every
   * instance (`reach: 'all_instances'`); without L2 only this process's
   * memory is purged (`reach: 'this_instance'`). Throws `upstream_unavailable`
   * when L2 could not be purged.
   */
  async purge(selector: PurgeSelector): Promise<StorePurge> {
    this.#purges++;
    const dropped = this.#o.l1.purge(selector);
    if (this.#o.l2 && !(await this.#o.l2.purge(selector))) {
      throw new BrokerError(
        'upstream_unavailable',
        'The shared cache could not be purged; tokens may still be served from it. Retry.',
        {
          retryAfterSeconds: 5,
        },
      );
    }
    return { dropped, ...this.reach };
  }

  /** How far a purge here reaches: every instance within the purge bound (with L2), or this one alone. */
  get reach(): Pick<StorePurge, 'reach' | 'withinSeconds'> {
    return this.#o.l2
      ? { reach: 'all_instances', withinSeconds: Math.ceil(this.#o.purgeBoundMs / 1000) }
      : { reach: 'this_instance' };
  }

  /**
   * The synchronous hit path: the L1 entry for `parts` when it is servable
   * and its generations were checked against L2 within `generationCheckMs`;
   * undefined otherwise (then `serve` decides). No promise and no I/O: this
   * is what most requests cost. `mint` is for a refresh-ahead re-mint;
   * `lifetimeSeconds` as for `serve`.
   */
  peek(
    parts: CacheKeyParts,
    asked: number,
    mint: () => Promise<Token>,
    lifetimeSeconds?: number,
  ): Served | undefined {
    const o = this.#o;
    const minLifetimeSeconds = requiredLifetimeSeconds(asked, lifetimeSeconds, o.refreshSkewSeconds);
    const entry = o.l1.get(parts) as L1Entry | undefined;
    const now = o.now();
    if (entry === undefined || this.#generationCheckDue(entry, now)) return undefined;
    if (!isServable(entry.expiresAt, now, o.refreshSkewSeconds, minLifetimeSeconds)) return undefined;
    this.#maybeRefreshAhead(parts, entry, mint);
    return served(entry, 'hit');
  }

  /** Whether an L1 entry must be re-checked against L2's generations before it is served. */
  #generationCheckDue(entry: L1Entry, now: number): boolean {
    if (!this.#o.l2) return false;
    return entry.checkedAt === undefined || now - entry.checkedAt >= this.#o.generationCheckMs;
  }

  /** L1, re-checking the entry's generations against L2 at most every `generationCheckMs`, so a purge reaches every instance. */
  async #fromL1(parts: CacheKeyParts): Promise<L1Entry | undefined> {
    const entry = this.#o.l1.get(parts) as L1Entry | undefined;
    const now = this.#o.now();
    const l2 = this.#o.l2;
    if (entry === undefined || l2 === undefined || !this.#generationCheckDue(entry, now)) return entry;
    const purges = this.#purges;
    const gens = await l2.generations(parts.account);
    if (gens === undefined) {
      // L2 cannot be read: L1 keeps serving, but only within the purge bound of its last check; past it, a
      // purge may have happened that this instance cannot see, so the token is minted afresh instead.
      if (entry.checkedAt !== undefined && now - entry.checkedAt < this.#o.purgeBoundMs) return entry;
      this.#forget(parts, entry);
      return undefined;
    }
    if (gens === null || entry.gens === undefined || !sameGenerations(gens, entry.gens)) {
      // Purged, or generations that would not settle, or minted while L2 was down (so maybe before a
      // purge): gone from L1, stale-if-error included.
      this.#forget(parts, entry);
      return undefined;
    }
    const checked: L1Entry = { ...entry, checkedAt: now };
    this.#remember(parts, checked, purges);
    return checked;
  }

  /** Serves from L2 when it has a servable token; otherwise mints once (see `#mintOnce`). */
  async #resolve(
    parts: CacheKeyParts,
    seen: Token | undefined,
    minLifetimeSeconds: number,
    mint: () => Promise<Token>,
  ): Promise<Served> {
    const o = this.#o;
    const purges = this.#purges;
    let newest = seen;
    if (o.l2) {
      const found = await o.l2.lookup(parts);
      if (found && seen && !sameGenerations(found.gens, (seen as L1Entry).gens)) {
        // A purge since L1 last checked: what L1 holds must not be served, not even stale.
        this.#forget(parts, seen);
        newest = undefined;
      }
      if (found?.token) {
        this.#remember(parts, l1Entry(found.token, found.gens, o.now()), purges);
        if (isServable(found.token.expiresAt, o.now(), o.refreshSkewSeconds, minLifetimeSeconds)) {
          return served(found.token, 'hit');
        }
        if (!newest || found.token.expiresAt > newest.expiresAt) newest = found.token;
      }
    }
    return this.#mintOnce(parts, newest, minLifetimeSeconds, mint);
  }

  /** A hit inside the refresh-ahead window re-mints in the background; the caller gets the token in hand. */
  #maybeRefreshAhead(parts: CacheKeyParts, seen: Token, mint: () => Promise<Token>): void {
    const o = this.#o;
    if (isServable(seen.expiresAt, o.now(), o.refreshSkewSeconds + o.refreshAheadSeconds, 0)) return;
    this.#flights
      .run(cacheKeyString(parts), () => this.#mintOnce(parts, seen, 0, mint))
      .catch((err: unknown) => this.#o.onBackgroundError(err));
  }

  /** Whether `candidate` can replace what we had: newer, and servable. */
  #accept(
    candidate: Token | undefined,
    seen: Token | undefined,
    minLifetimeSeconds: number,
  ): candidate is Token {
    if (!candidate) return false;
    if (seen && candidate.expiresAt <= seen.expiresAt) return false;
    return isServable(candidate.expiresAt, this.#o.now(), this.#o.refreshSkewSeconds, minLifetimeSeconds);
  }

  async #mintOnce(
    parts: CacheKeyParts,
    seen: Token | undefined,
    minLifetimeSeconds: number,
    mint: () => Promise<Token>,
  ): Promise<Served> {
    const o = this.#o;
    const l2 = o.l2;
    const purges = this.#purges;
    const mintAndStore = async (gens: Generations | undefined): Promise<Served> => {
      const token = await mint();
      if (l2 && gens) {
        await l2.store(parts, gens, token);
        this.#remember(parts, l1Entry(token, gens, o.now()), purges);
      } else {
        // Without L2 generations: with L2 configured it is re-checked (and dropped) once L2 answers.
        this.#remember(parts, l2 ? { ...token, checkedAt: o.now() } : token, purges);
      }
      return served(token, 'miss');
    };
    if (!l2) return mintAndStore(undefined);

    const lock = await l2.lock(parts, o.lockTtlMs);
    if (lock === undefined) return mintAndStore((await l2.lookup(parts))?.gens);
    if ('owner' in lock) {
      try {
        // Another instance may have finished its mint between our lookup and our lock.
        const found = await l2.lookup(parts);
        if (found && this.#accept(found.token, seen, minLifetimeSeconds)) {
          this.#remember(parts, l1Entry(found.token, found.gens, o.now()), purges);
          return served(found.token, 'hit');
        }
        return await mintAndStore(found?.gens);
      } finally {
        await l2.unlock(parts, lock.owner);
      }
    }
    // Another instance genuinely holds the lock: wait for its result with backoff, until it lets go,
    // its lock expires or our own deadline passes, whichever is first; then mint ourselves.
    const deadline = Math.min(o.now() + o.waitDeadlineMs, lock.heldUntil);
    let gens: Generations | undefined;
    for (let attempt = 0; o.now() < deadline; attempt++) {
      await o.sleep(Math.min(10 * 2 ** attempt, 200, Math.max(1, deadline - o.now())));
      const found = await l2.lookup(parts, true);
      if (found === undefined && l2.state === 'open') break; // L2 is down: stop waiting for it
      gens = found?.gens;
      if (found && this.#accept(found.token, seen, minLifetimeSeconds)) {
        this.#remember(parts, l1Entry(found.token, found.gens, o.now()), purges);
        return served(found.token, 'hit');
      }
      if (found && found.lockedUntil === undefined) break; // the holder let go without a token for us
    }
    return mintAndStore(gens ?? (await l2.lookup(parts))?.gens);
  }
}

/** A token as served, and where it came from (one object per request: this is the hit path). */
function served(token: Token, cache: CacheOutcome): Served {
  return token.scope === undefined
    ? { token: token.token, expiresAt: token.expiresAt, cache }
    : { token: token.token, expiresAt: token.expiresAt, scope: token.scope, cache };
}

function l1Entry(token: Token, gens: Generations, checkedAt: number): L1Entry {
  return { ...token, gens, checkedAt };
}

function sameGenerations(a: Generations, b: Generations | undefined): boolean {
  return b !== undefined && a.all === b.all && a.account === b.account;
}
