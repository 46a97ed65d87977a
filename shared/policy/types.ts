/** What a grant can allow. */
export type Operation = 'token' | 'jwt' | 'idtoken';

/** The operations a grant allows when it names none. */
export const DEFAULT_OPERATIONS: readonly Operation[] = ['token'];

/** A service account the broker holds a key for. */
export interface ServiceAccountEntry {
  /** Canonical (lower-case) email. */
  readonly email: string;
  /** `projects/P/secrets/S/versions/V` or `file:PATH`. */
  readonly key: string;
  readonly tenant: string | undefined;
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
  readonly callers: Matcher;
  readonly serviceAccounts: Matcher | undefined;
  readonly tenants: Matcher | undefined;
  readonly scopes: ReadonlySet<string>;
  readonly subjects: Matcher | undefined;
  readonly audiences: Matcher | undefined;
  readonly operations: ReadonlySet<Operation>;
}

/** A validated policy with its lookups precomputed, so a request costs no parsing. */
export interface CompiledPolicy {
  readonly accounts: ReadonlyMap<string, ServiceAccountEntry>;
  readonly tenants: ReadonlyMap<string, ServiceAccountEntry>;
  readonly grants: readonly CompiledGrant[];
  readonly admins: ReadonlySet<string>;
  readonly rateLimit: RateLimit | undefined;
  readonly rateLimits: ReadonlyMap<string, RateLimit>;
}
