import { isSourceRefused, type SecurityTokenService } from './adapters/sts.js';
import type { TokenStore } from './cache/token-store.js';
import type { CacheKeyParts, PurgeReach, Served, Token } from './cache/types.js';
import { Lru } from './lru.js';
import type { Minter } from './minting/minter.js';
import { type AccessBoundary, type BoundaryTemplate, expandBoundary } from './policy/boundary.js';
import type { KeyedAccount, KeylessAccount, ServiceAccountEntry } from './policy/types.js';
import type { MintRequest } from './request.js';

/** What the broker needs; the real ones are built at a function's entry point, tests pass stand-ins. */
export interface BrokerDeps {
  /** One way to mint per kind of account; the store and the caller never see which ran. */
  minters: { readonly keyed: Minter<KeyedAccount>; readonly keyless: Minter<KeylessAccount> };
  /** The caches (L1, and L2 when shared), with single-flight and cross-instance minting. */
  store: TokenStore;
  /** Called once per mint: for metrics and tests. */
  onMint?: (key: CacheKeyParts, account: ServiceAccountEntry) => void;
  /** Google's STS, for tokens bounded by a Credential Access Boundary. */
  sts?: SecurityTokenService;
  /**
   * Life a source token must have left when it is bounded (besides the skew): a
   * bounded token expires with its source, so it must outlast the refresh-ahead window.
   */
  boundedMarginSeconds?: number;
  now?: () => number;
}

/** A request the policy allowed, with the one account it resolved to and what its token is cached under. */
export interface Admission {
  readonly request: MintRequest;
  readonly account: ServiceAccountEntry;
  readonly parts: CacheKeyParts;
  /** The expanded access boundary its token is bounded by, when its grant carries one. */
  readonly boundary?: AccessBoundary;
  /** Mints a fresh token for this admission (the store calls it at most once across instances). */
  readonly mint: () => Promise<Token>;
}

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

/**
 * The broker's serving core: it never reads the policy. The service hands
 * it the account the policy resolved; it serves from a cache or mints once.
 */
export interface Broker {
  /**
   * What `request`, allowed for `account`, is cached under, and how to mint
   * it; with the grant's boundary, a token bounded by it, never the account's
   * own. Pure. Throws `invalid_request` when the boundary cannot be expanded
   * for this request.
   */
  admit(request: MintRequest, account: ServiceAccountEntry, boundary?: BoundaryTemplate): Admission;
  /** The synchronous fast path: the token from this instance's memory (L1), or undefined (then `serve`). */
  cached(admission: Admission): Served | undefined;
  /** Serves from any cache or by minting once. Throws `upstream_rejected` or `upstream_unavailable`. */
  serve(admission: Admission): Promise<Served>;
  /** Drops cached tokens of `accounts` (emails the policy resolved) or of all; the service checked an admin asked. */
  purge(accounts: readonly string[] | 'all'): Promise<PurgeResult>;
}

/** Creates the broker over its dependencies. */
export function createBroker(deps: BrokerDeps): Broker {
  function mintFor(account: ServiceAccountEntry, req: MintRequest, parts: CacheKeyParts): Promise<Token> {
    deps.onMint?.(parts, account);
    return account.mode === 'keyless'
      ? deps.minters.keyless.mint(account, req)
      : deps.minters.keyed.mint(account, req);
  }

  const now = deps.now ?? Date.now;

  // A boundary is expanded and hashed once per grant, tenant and subject, not on every hit.
  const expanded = new WeakMap<BoundaryTemplate, Lru<string, AccessBoundary>>();
  function boundaryFor(
    template: BoundaryTemplate,
    tenant: string | undefined,
    subject: string | undefined,
  ): AccessBoundary {
    let known = expanded.get(template);
    if (known === undefined) {
      known = new Lru(10_000);
      expanded.set(template, known);
    }
    const key = `${tenant ?? ''}\n${subject ?? ''}`;
    let boundary = known.get(key);
    if (boundary === undefined) {
      boundary = expandBoundary(template, { tenant, subject });
      known.set(key, boundary);
    }
    return boundary;
  }

  /**
   * A token bounded by `boundary` (docs/contract.md, "Tenants on shared
   * accounts"): the account's own token for the request's scopes from the
   * caches (or minted once), exchanged at STS. If STS refuses that source
   * token, a newer one is minted once and exchanged again. The bounded token
   * expires with its source.
   */
  async function bounded(
    boundary: AccessBoundary,
    sourceParts: CacheKeyParts,
    mintSource: () => Promise<Token>,
    minLifetimeSeconds: number,
  ): Promise<Token> {
    const sts = deps.sts;
    if (sts === undefined) throw new Error('an access boundary needs the STS adapter');
    const min = Math.max(minLifetimeSeconds, deps.boundedMarginSeconds ?? 0);
    let source: Token = await deps.store.serve(sourceParts, min, mintSource);
    let downscoped: Awaited<ReturnType<SecurityTokenService['downscope']>>;
    try {
      downscoped = await sts.downscope(source.token, boundary);
    } catch (err) {
      if (!isSourceRefused(err)) throw err;
      source = await deps.store.renew(sourceParts, source, mintSource);
      downscoped = await sts.downscope(source.token, boundary);
    }
    const expiresAt =
      downscoped.expiresIn === undefined
        ? source.expiresAt
        : Math.min(source.expiresAt, now() + downscoped.expiresIn * 1000);
    return source.scope === undefined
      ? { token: downscoped.token, expiresAt }
      : { token: downscoped.token, expiresAt, scope: source.scope };
  }

  return {
    admit(request, account, template) {
      const parts: CacheKeyParts = {
        kind: request.kind,
        account: account.email,
        scopes: request.scopes,
        subject: request.kind === 'token' ? request.subject : undefined,
        audience: request.kind === 'token' ? undefined : request.audience,
      };
      const mint = () => mintFor(account, request, parts);
      if (template === undefined) return { request, account, parts, mint };
      const boundary = boundaryFor(
        template,
        'tenant' in request.for ? request.for.tenant : undefined,
        parts.subject,
      );
      return {
        request,
        account,
        parts: { ...parts, boundary: boundary.key },
        boundary,
        mint: () => bounded(boundary, parts, mint, request.minLifetimeSeconds),
      };
    },

    cached({ parts, request, mint }) {
      return deps.store.peek(parts, request.minLifetimeSeconds, mint, lifetimeOf(request));
    },

    serve({ parts, request, mint }) {
      return deps.store.serve(parts, request.minLifetimeSeconds, mint, lifetimeOf(request));
    },

    async purge(accounts) {
      const purged = await deps.store.purge(accounts === 'all' ? { all: true } : { accounts });
      return { accounts, ...purged };
    },
  };
}

/** The lifetime a `token` request asks (docs/contract.md, "Long-lived tokens"): what a cached token must cover. */
function lifetimeOf(request: MintRequest): number | undefined {
  return request.kind === 'token' ? request.lifetimeSeconds : undefined;
}
