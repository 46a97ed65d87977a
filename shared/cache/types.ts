import type { TokenKind } from '../../packages/wire/rules.js';

/** What a token is cached under (docs/contract.md, "Cache semantics"). */
export interface CacheKeyParts {
  readonly kind: TokenKind;
  /** The service account's canonical email (a tenant resolves to exactly one). */
  readonly account: string;
  /** Sorted and de-duplicated. */
  readonly scopes: readonly string[];
  readonly subject: string | undefined;
  readonly audience: string | undefined;
  /** The key of the access boundary a downscoped token is bounded by (docs/contract.md, "Tenants on shared accounts"). */
  readonly boundary?: string | undefined;
}

/** A token as the caches hold it. */
export interface Token {
  readonly token: string;
  /** Epoch milliseconds when the token really expires. */
  readonly expiresAt: number;
  /** The scopes Google granted, for `token`. */
  readonly scope?: string;
}

/** Where a served token came from. */
export type CacheOutcome = 'hit' | 'miss' | 'stale';

/** A token as the broker serves it: the token, and where it came from. */
export interface Served extends Token {
  readonly cache: CacheOutcome;
}

/**
 * How far a purge reached: every instance (through the shared cache's
 * generations), or only the memory of the process that ran it (no shared cache).
 */
export type PurgeReach = 'all_instances' | 'this_instance';

/** What a purge did: local entries dropped, and how far it reached. */
export interface StorePurge {
  readonly dropped: number;
  readonly reach: PurgeReach;
  /** With `all_instances`: every instance stops serving the purged tokens within this many seconds. */
  readonly withinSeconds?: number;
}

/** Which cached tokens a purge drops. */
export type PurgeSelector = { readonly all: true } | { readonly accounts: readonly string[] };

/**
 * The in-process token cache (L1). Synchronous on purpose: it sits on the
 * path of every cache hit, where each promise costs (the functions framework
 * runs handlers in a domain, which hooks every promise).
 */
export interface TokenCache {
  /** Returns the entry for `key`, whatever life it has left; the caller judges whether it can serve it. */
  get(key: CacheKeyParts): Token | undefined;
  /** Stores a token until it really expires. */
  set(key: CacheKeyParts, value: Token): void;
  /** Forgets the entry for `key` (a purge seen from another instance). */
  delete(key: CacheKeyParts): void;
  /** Makes every matching token unreachable; returns how many local entries were dropped. */
  purge(selector: PurgeSelector): number;
}

/** One string for the parts; the order of fields is fixed, so equal parts give equal strings. */
export function cacheKeyString(key: CacheKeyParts): string {
  const base = [key.kind, key.account, key.scopes, key.subject ?? null, key.audience ?? null];
  // A bounded token's key adds its boundary; an unbounded one's stays as it always was (stored entries stay valid).
  return JSON.stringify(key.boundary === undefined ? base : [...base, key.boundary]);
}
