import type { TokenStore } from './cache/token-store.js';
import type { CachedToken, CacheKeyParts, CacheOutcome, PurgeReach } from './cache/types.js';
import { BrokerError } from './errors.js';
import type { Minter } from './minting/minter.js';
import { accountsForPurge, authorize, type DenyReason } from './policy/evaluate.js';
import type { CompiledPolicy, KeyedAccount, KeylessAccount, ServiceAccountEntry } from './policy/types.js';
import type { MintRequest, PurgeRequest } from './request.js';

/** What the broker needs; the real ones are built at a function's entry point, tests pass stand-ins. */
export interface BrokerDeps {
  policy: CompiledPolicy;
  /** One way to mint per kind of account; the store and the caller never see which ran. */
  minters: { readonly keyed: Minter<KeyedAccount>; readonly keyless: Minter<KeylessAccount> };
  /** The caches (L1, and L2 when shared), with single-flight and cross-instance minting. */
  store: TokenStore;
  /** Called once per mint: for metrics and tests. */
  onMint?: (key: CacheKeyParts, account: ServiceAccountEntry) => void;
}

/** A token the broker serves. */
export interface Served {
  readonly token: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
  readonly scope: string | undefined;
  readonly cache: CacheOutcome;
}

/** A request the policy allowed, with the one account it resolved to and what its token is cached under. */
export interface Admission {
  readonly request: MintRequest;
  readonly account: ServiceAccountEntry;
  readonly parts: CacheKeyParts;
  /** Mints a fresh token for this admission (the store calls it at most once across instances). */
  readonly mint: () => Promise<CachedToken>;
}

/** The policy's answer, as a value: an admission, or the reason for the one 403 every denial gets. */
export type AdmitResult = { readonly admitted: Admission } | { readonly denied: DenyReason };

/** What a purge reached. */
export interface PurgeResult {
  readonly accounts: readonly string[] | 'all';
  /** Entries dropped from this instance's memory. */
  readonly dropped: number;
  /** Every instance (shared cache), or only this process's memory (none). */
  readonly reach: PurgeReach;
  /** With `all_instances`: the bound, in seconds, within which every instance stops serving them. */
  readonly withinSeconds?: number;
}

/** The text of every 403: the same for unknown and forbidden targets, so nobody can probe for names. */
export const ACCESS_DENIED =
  'The broker policy does not allow this caller this request (service account or tenant, scopes, subject, audience or operation). Ask the broker operators for a grant.';

/** The broker's core: authorise once, then serve from a cache or mint once. */
export interface Broker {
  /** Authorises `req` for `caller` (deny by default). Pure: no I/O, no throw. */
  admit(caller: string, req: MintRequest): AdmitResult;
  /** The synchronous fast path: the token from this instance's memory (L1), or undefined (then `serve`). */
  cached(admission: Admission): Served | undefined;
  /** Serves from any cache or by minting once. Throws `upstream_rejected` or `upstream_unavailable`. */
  serve(admission: Admission): Promise<Served>;
  /** Drops cached tokens; the caller checked that an admin asked. Throws `not_found` for a target the policy lacks. */
  purge(req: PurgeRequest): Promise<PurgeResult>;
}

/** Creates the broker over its dependencies. */
export function createBroker(deps: BrokerDeps): Broker {
  function mintFor(
    account: ServiceAccountEntry,
    req: MintRequest,
    parts: CacheKeyParts,
  ): Promise<CachedToken> {
    deps.onMint?.(parts, account);
    return account.mode === 'keyless'
      ? deps.minters.keyless.mint(account, req)
      : deps.minters.keyed.mint(account, req);
  }

  const served = ({ token, expiresAt, scope }: CachedToken, cache: CacheOutcome): Served => ({
    token,
    expiresAt,
    scope,
    cache,
  });

  return {
    admit(caller, req) {
      const decision = authorize(deps.policy, {
        caller,
        operation: req.kind,
        ...('serviceAccount' in req.target
          ? { serviceAccount: req.target.serviceAccount }
          : { tenant: req.target.tenant }),
        scopes: req.scopes,
        ...(req.kind === 'token' && req.subject !== undefined ? { subject: req.subject } : {}),
        ...(req.kind !== 'token' && req.audience !== undefined ? { audience: req.audience } : {}),
      });
      if (!decision.allowed) return { denied: decision.reason };
      const account = decision.account;
      const parts: CacheKeyParts = {
        kind: req.kind,
        account: account.email,
        scopes: req.scopes,
        subject: req.kind === 'token' ? req.subject : undefined,
        audience: req.kind === 'token' ? undefined : req.audience,
      };
      return { admitted: { request: req, account, parts, mint: () => mintFor(account, req, parts) } };
    },

    cached({ parts, request, mint }) {
      const hit = deps.store.peek(parts, request.minLifetimeSeconds, mint);
      return hit && served(hit.token, hit.outcome);
    },

    async serve({ parts, request, mint }) {
      const { token, outcome } = await deps.store.serve(parts, request.minLifetimeSeconds, mint);
      return served(token, outcome);
    },

    async purge(req) {
      if ('all' in req) return { accounts: 'all', ...(await deps.store.purge({ all: true })) };
      const accounts = accountsForPurge(deps.policy, req);
      if (accounts.length === 0) {
        // Only an admin gets here: naming what the policy lacks tells them nothing they cannot read.
        throw new BrokerError(
          'not_found',
          'serviceAccount' in req
            ? 'The policy has no such service account; nothing was purged.'
            : 'The policy has no such tenant; nothing was purged.',
        );
      }
      return { accounts, ...(await deps.store.purge({ accounts })) };
    },
  };
}
