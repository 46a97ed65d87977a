import type { AccountRef, MintRequest, PurgeRequest } from '../request.js';
import type { BoundaryTemplate } from './boundary.js';
import type { CompiledGrant, CompiledPolicy, RateLimit, ServiceAccountEntry } from './types.js';

/**
 * Why a request was denied, by the dimension that failed: for the audit
 * line and `policy explain`, never for the caller (every denial answers the
 * same 403). For a mint, the reason is that of the grant that matched the
 * most dimensions, checked in this order: caller, account or tenant,
 * operation, scopes, subject, audience.
 */
export type DenyReason =
  /** The policy has no such service account or tenant. */
  | 'unknown_account'
  /** No grant names this caller for this account or tenant. */
  | 'caller_not_granted'
  | 'operation_not_granted'
  | 'scope_not_granted'
  | 'subject_not_granted'
  | 'audience_not_granted'
  /** A purge by a caller who is not in `admins`. */
  | 'not_admin';

/** What a grant said about a request: it matched, or the first dimension it failed. */
export type GrantVerdict =
  | 'match'
  | Exclude<DenyReason, 'unknown_account' | 'not_admin'>
  | 'account_not_granted';

/** The one policy decision of a request: everything any layer needs from the policy, read once. */
export interface Decision {
  /** The caller's request limit: its own from `rateLimits`, else the policy's `rateLimit`, else none. */
  readonly rateLimit: RateLimit | undefined;
  readonly outcome: Outcome;
}

export type Outcome =
  /** A mint the policy allows: the one account it resolves to, and the grant that allowed it (with its boundary). */
  | {
      readonly allowed: true;
      readonly account: ServiceAccountEntry;
      readonly grant: number;
      readonly boundary: BoundaryTemplate | undefined;
    }
  /** A purge by an admin: the accounts it covers. */
  | { readonly allowed: true; readonly purge: readonly string[] | 'all' }
  | { readonly allowed: false; readonly reason: DenyReason };

/** A request to decide on: a mint, or a purge. Every email in it is canonical. */
export type Asked =
  | { readonly action: 'mint'; readonly request: MintRequest }
  | { readonly action: 'purge'; readonly request: PurgeRequest };

/**
 * Deny by default (docs/contract.md, "Policy"): a mint is allowed only when
 * one grant matches every dimension it asks for. A request by
 * `serviceAccount` is matched by grants' `serviceAccounts` only; a request
 * by `tenant` resolves to the tenant's one account and is matched by
 * grants' `tenants` only, so a tenant grant never reaches another account.
 * A purge needs the caller in `admins`, and an account or tenant the policy
 * has. Pure: no I/O, no throw; an allowed mint costs one pass over the
 * grants, a denial a second one to find its reason.
 */
export function decide(policy: CompiledPolicy, caller: string, asked: Asked): Decision {
  const rateLimit = policy.rateLimits.get(caller) ?? policy.rateLimit;
  return {
    rateLimit,
    outcome:
      asked.action === 'mint' ? mint(policy, caller, asked.request) : purge(policy, caller, asked.request),
  };
}

function mint(policy: CompiledPolicy, caller: string, req: MintRequest): Outcome {
  const account = resolve(policy, req.for);
  if (account === undefined) return { allowed: false, reason: 'unknown_account' };
  for (const grant of policy.grants) {
    if (verdict(grant, caller, req, account) === 'match') {
      return { allowed: true, account, grant: grant.index, boundary: grant.boundary };
    }
  }
  return { allowed: false, reason: reasonOf(policy.grants.map((g) => verdict(g, caller, req, account))) };
}

function purge(policy: CompiledPolicy, caller: string, req: PurgeRequest): Outcome {
  if (!policy.admins.has(caller)) return { allowed: false, reason: 'not_admin' };
  if ('all' in req) return { allowed: true, purge: 'all' };
  const account = resolve(policy, req);
  return account === undefined
    ? { allowed: false, reason: 'unknown_account' }
    : { allowed: true, purge: [account.email] };
}

/** The account a reference names in the policy: exact tenant mappings first, then the `*` account. */
function resolve(policy: CompiledPolicy, ref: AccountRef): ServiceAccountEntry | undefined {
  return 'serviceAccount' in ref
    ? policy.accounts.get(ref.serviceAccount)
    : (policy.tenants.get(ref.tenant) ?? policy.anyTenant);
}

/** The order dimensions are checked in; a later one means a grant came closer to allowing. */
const DEPTH: readonly GrantVerdict[] = [
  'caller_not_granted',
  'account_not_granted',
  'operation_not_granted',
  'scope_not_granted',
  'subject_not_granted',
  'audience_not_granted',
  'match',
];

/** The reason of a denial: the verdict of the grant that came closest (the first such grant). */
function reasonOf(verdicts: readonly GrantVerdict[]): DenyReason {
  let best: GrantVerdict = 'caller_not_granted';
  for (const v of verdicts) if (DEPTH.indexOf(v) > DEPTH.indexOf(best)) best = v;
  // A grant for the caller but another account is, to the caller, no grant for this account.
  return best === 'account_not_granted' || best === 'match' ? 'caller_not_granted' : best;
}

/** What one grant says about a request for `account`, dimension by dimension. */
export function verdict(
  grant: CompiledGrant,
  caller: string,
  req: MintRequest,
  account: ServiceAccountEntry,
): GrantVerdict {
  if (!grant.callers(caller)) return 'caller_not_granted';
  if ('serviceAccount' in req.for) {
    if (grant.serviceAccounts === undefined || !grant.serviceAccounts(account.email))
      return 'account_not_granted';
  } else if (grant.tenants === undefined || !grant.tenants(req.for.tenant)) {
    return 'account_not_granted';
  }
  if (!grant.operations.has(req.kind)) return 'operation_not_granted';
  for (const scope of req.scopes) if (!grant.scopes.has(scope)) return 'scope_not_granted';
  const subject = req.kind === 'token' ? req.subject : undefined;
  if (subject === undefined) {
    if (grant.subjects !== undefined) return 'subject_not_granted';
  } else if (grant.subjects === undefined || !grant.subjects(subject)) {
    return 'subject_not_granted';
  }
  const audience = req.kind === 'token' ? undefined : req.audience;
  if (audience !== undefined && (grant.audiences === undefined || !grant.audiences(audience))) {
    return 'audience_not_granted';
  }
  return 'match';
}
