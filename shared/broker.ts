import type { TokenEndpoint } from './adapters/token-endpoint.js';
import type { TokenStore } from './cache/token-store.js';
import type { CachedToken, CacheKeyParts, CacheOutcome } from './cache/types.js';
import { BrokerError } from './errors.js';
import {
  ASSERTION_HEADER,
  accessTokenAssertionClaims,
  epochSeconds,
  idTokenAssertionClaims,
  MAX_ASSERTION_LIFETIME_SECONDS,
  selfSignedClaims,
  selfSignedHeader,
} from './jwt/claims.js';
import { signJwt } from './jwt/sign.js';
import type { KeyStore, LoadedKey } from './key-store.js';
import { accountsForPurge, authorize, isAdmin } from './policy/evaluate.js';
import type { CompiledPolicy, ServiceAccountEntry } from './policy/types.js';
import type { MintRequest, PurgeRequest } from './request.js';
import { isKeyRejected } from './upstream-errors.js';

/** What the broker needs; the real ones are built at a function's entry point, tests pass stand-ins. */
export interface BrokerDeps {
  policy: CompiledPolicy;
  keys: KeyStore;
  tokenEndpoint: TokenEndpoint;
  /** The caches (L1, and L2 when shared), with single-flight and cross-instance minting. */
  store: TokenStore;
  /** Google's token endpoint; also the assertion's `aud`. */
  tokenUrl: string;
  refreshSkewSeconds: number;
  now?: () => number;
  /** Called once per mint (a sign, plus an exchange for `token`/`idtoken`): for metrics and tests. */
  onMint?: (key: CacheKeyParts) => void;
}

/** A token the broker serves. */
export interface Served {
  readonly token: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
  readonly scope: string | undefined;
  readonly cache: CacheOutcome;
}

/** Facts about one decision, filled in as the broker goes, for the audit log line. */
export interface Audit {
  account?: string;
  decision?: 'allow' | 'deny';
  reason?: string;
  cache?: CacheOutcome;
}

/** The text of every 403: the same for unknown and forbidden targets, so nobody can probe for names. */
export const ACCESS_DENIED =
  'The broker policy does not allow this caller this request (service account or tenant, scopes, subject, audience or operation). Ask the broker operators for a grant.';

/** The broker's operations: authorise, then serve from cache or mint once. */
export interface Broker {
  /**
   * The synchronous fast path: authorises `req` and serves it from this
   * instance's memory (L1) when it can, without a promise or any I/O;
   * undefined when it cannot (then call `mint`). Throws `access_denied`.
   */
  cached(caller: string, req: MintRequest, audit?: Audit): Served | undefined;
  /** Serves a token for `req`, from any cache or by minting once. Throws `access_denied`, `upstream_rejected` or `upstream_unavailable`. */
  mint(caller: string, req: MintRequest, audit?: Audit): Promise<Served>;
  /** Drops cached tokens; admins only. Throws `access_denied`. */
  purge(
    caller: string,
    req: PurgeRequest,
    audit?: Audit,
  ): Promise<{ accounts: readonly string[] | 'all'; dropped: number }>;
}

/** Creates the broker over its dependencies. */
export function createBroker(deps: BrokerDeps): Broker {
  const now = deps.now ?? Date.now;

  function deny(audit: Audit, reason: string): BrokerError {
    audit.decision = 'deny';
    audit.reason = reason;
    return new BrokerError('access_denied', ACCESS_DENIED);
  }

  async function sign(req: MintRequest, loaded: LoadedKey): Promise<CachedToken> {
    const nowMs = now();
    const { key, signingKey } = loaded;
    switch (req.kind) {
      case 'token': {
        const claims = accessTokenAssertionClaims({
          key,
          scopes: req.scopes,
          subject: req.subject,
          tokenUrl: deps.tokenUrl,
          nowMs,
        });
        const assertion = await signJwt(ASSERTION_HEADER, claims, signingKey);
        const result = await deps.tokenEndpoint.exchange(assertion, 'access_token');
        return {
          token: result.token,
          expiresAt: nowMs + result.expiresIn * 1000,
          scope: result.scope ?? req.scopes.join(' '),
        };
      }
      case 'idtoken': {
        const claims = idTokenAssertionClaims({
          key,
          audience: req.audience,
          tokenUrl: deps.tokenUrl,
          nowMs,
        });
        const assertion = await signJwt(ASSERTION_HEADER, claims, signingKey);
        const result = await deps.tokenEndpoint.exchange(assertion, 'id_token');
        return { token: result.token, expiresAt: nowMs + result.expiresIn * 1000 };
      }
      case 'jwt': {
        const target = req.audience !== undefined ? { audience: req.audience } : { scopes: req.scopes };
        const claims = selfSignedClaims({ key, target, nowMs });
        const token = await signJwt(selfSignedHeader(key), claims, signingKey);
        return { token, expiresAt: (epochSeconds(nowMs) + MAX_ASSERTION_LIFETIME_SECONDS) * 1000 };
      }
    }
  }

  async function mintFresh(
    account: ServiceAccountEntry,
    req: MintRequest,
    parts: CacheKeyParts,
  ): Promise<CachedToken> {
    deps.onMint?.(parts);
    let loaded = await deps.keys.get(account.key, account.email);
    let fresh: CachedToken;
    try {
      fresh = await sign(req, loaded);
    } catch (err) {
      if (!isKeyRejected(err)) throw err;
      // The key was rotated or deleted: read the secret again and try once more.
      deps.keys.invalidate(account.key);
      loaded = await deps.keys.get(account.key, account.email);
      fresh = await sign(req, loaded);
    }
    return fresh;
  }

  /** Authorises `req` for `caller` (deny by default) and names what it is cached under. Throws `access_denied`. */
  function admit(caller: string, req: MintRequest, audit: Audit) {
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
    if (!decision.allowed) throw deny(audit, decision.reason);
    const account = decision.account;
    audit.decision = 'allow';
    audit.account = account.email;
    const parts: CacheKeyParts = {
      kind: req.kind,
      account: account.email,
      scopes: req.scopes,
      subject: req.kind === 'token' ? req.subject : undefined,
      audience: req.kind === 'token' ? undefined : req.audience,
    };
    return { account, parts, mint: () => mintFresh(account, req, parts) };
  }

  function served(token: CachedToken, outcome: CacheOutcome, audit: Audit): Served {
    audit.cache = outcome;
    return { token: token.token, expiresAt: token.expiresAt, scope: token.scope, cache: outcome };
  }

  return {
    cached(caller, req, audit = {}) {
      const { parts, mint } = admit(caller, req, audit);
      const hit = deps.store.peek(parts, req.minLifetimeSeconds, mint);
      return hit && served(hit.token, hit.outcome, audit);
    },

    async mint(caller, req, audit = {}) {
      const { parts, mint } = admit(caller, req, audit);
      const { token, outcome } = await deps.store.serve(parts, req.minLifetimeSeconds, mint);
      return served(token, outcome, audit);
    },

    async purge(caller, req, audit = {}) {
      if (!isAdmin(deps.policy, caller)) throw deny(audit, 'not_admin');
      audit.decision = 'allow';
      if ('all' in req) {
        audit.account = '*';
        return { accounts: 'all', dropped: await deps.store.purge({ all: true }) };
      }
      const accounts = accountsForPurge(deps.policy, req) ?? [];
      audit.account = accounts.join(',');
      return { accounts, dropped: accounts.length === 0 ? 0 : await deps.store.purge({ accounts }) };
    },
  };
}
