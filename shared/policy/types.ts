import type { TokenKind } from '../../packages/wire/rules.js';
import type { BoundaryTemplate } from './boundary.js';

/** What a grant can allow: minting one kind of token. */
export type Operation = TokenKind;

/** The operations a grant allows when it names none. */
export const DEFAULT_OPERATIONS: readonly Operation[] = ['token'];

/** A service account the broker serves: keyed (it holds a key) or keyless (IAM signs for it). */
export type ServiceAccountEntry = KeyedAccount | KeylessAccount;

interface AccountBase {
  /** Canonical (lower-case) email. */
  readonly email: string;
  /** The tenant ids this account serves (`tenant`, or `tenants` without `*`). */
  readonly tenants: readonly string[];
  /** `tenants: ["*"]`: any tenant id no other account maps. */
  readonly anyTenant: boolean;
  /** Shared by more than one tenant (`*`, or several ids): every tenant grant on it needs an access boundary. */
  readonly shared: boolean;
}

/** An account whose key the broker reads from Secret Manager (or a file, locally). */
export interface KeyedAccount extends AccountBase {
  readonly mode: 'keyed';
  /** `projects/P/secrets/S/versions/V` or `file:PATH`. */
  readonly key: string;
}

/** An account the broker mints for through Google's IAM Credentials API, with no key anywhere (docs/contract.md, "Keyless service accounts"). */
export interface KeylessAccount extends AccountBase {
  readonly mode: 'keyless';
  /** The impersonation chain, canonical emails, first hop first; empty for a direct grant. */
  readonly delegates: readonly string[];
  /** The longest `lifetimeSeconds` a request may ask (docs/contract.md, "Long-lived tokens"): 3600 unless the policy raises it, up to 43200. */
  readonly maxLifetimeSeconds: number;
}

/** A per-caller request limit. */
export interface RateLimit {
  readonly requests: number;
  readonly windowSeconds: number;
}

/** A pattern compiled once: exact, `*`, or `*@domain`. */
export type Matcher = (value: string) => boolean;

/** A grant, normalised and with its patterns compiled. */
export interface CompiledGrant {
  readonly index: number;
  /** The Credential Access Boundary its tokens are bounded by (docs/contract.md, "Tenants on shared accounts"). */
  readonly boundary: BoundaryTemplate | undefined;
  readonly callers: Matcher;
  readonly serviceAccounts: Matcher | undefined;
  readonly tenants: Matcher | undefined;
  /** The `tenants` patterns as written (ids or `*`), for the checks that need to list what a grant reaches. */
  readonly tenantPatterns: readonly string[] | undefined;
  readonly scopes: ReadonlySet<string>;
  readonly subjects: Matcher | undefined;
  readonly audiences: Matcher | undefined;
  readonly operations: ReadonlySet<Operation>;
}

/** A validated policy with its lookups precomputed, so a request costs no parsing. */
export interface CompiledPolicy {
  readonly accounts: ReadonlyMap<string, ServiceAccountEntry>;
  /** Tenant ids mapped exactly (`tenant`, or ids in `tenants`). */
  readonly tenants: ReadonlyMap<string, ServiceAccountEntry>;
  /** The account with `tenants: ["*"]`, serving every tenant id not mapped exactly. */
  readonly anyTenant: ServiceAccountEntry | undefined;
  readonly grants: readonly CompiledGrant[];
  /** Exact emails, exact principals and principal prefixes (`issuers.ts`). */
  readonly admins: Pick<PrincipalLookup<true>, 'has'>;
  readonly rateLimit: RateLimit | undefined;
  /** Per caller: exact emails and principals first, then the longest principal prefix. */
  readonly rateLimits: Pick<PrincipalLookup<RateLimit>, 'get'>;
  /** The OIDC issuers whose callers the broker trusts beside Google's (docs/contract.md, "Trusted issuers"). */
  readonly issuers: readonly CompiledIssuer[];
}

/** A table keyed by caller (an email or a principal), with principal prefixes. */
export interface PrincipalLookup<V> {
  get(caller: string): V | undefined;
  has(caller: string): boolean;
}

/** A trusted OIDC issuer of the policy, validated (docs/contract.md, "Trusted issuers"). */
export interface CompiledIssuer {
  /** Its position in the policy's `issuers`, for messages. */
  readonly index: number;
  /** The prefix of its callers' principals: `NAME:SUB`. */
  readonly name: string;
  /** The exact `iss` of its tokens, and where its discovery document is. */
  readonly issuer: string;
  /** A token's `aud` must be, or contain, one of these. */
  readonly audiences: ReadonlySet<string>;
  /** Every listed claim must be a string that matches (exact, or by prefix for a value ending in `*`). */
  readonly claims: ReadonlyArray<{
    readonly claim: string;
    readonly text: string;
    readonly matches: Matcher;
  }>;
  /** The key set's URL; otherwise read from `{issuer}/.well-known/openid-configuration`. */
  readonly jwksUri: string | undefined;
}
