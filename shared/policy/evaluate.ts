import type { Target } from '../request.js';
import type { CompiledGrant, CompiledPolicy, Operation, RateLimit, ServiceAccountEntry } from './types.js';

/** A request to authorise; every email in it is already canonical. */
export interface AccessRequest {
  readonly caller: string;
  readonly operation: Operation;
  readonly serviceAccount?: string;
  readonly tenant?: string;
  readonly scopes: readonly string[];
  readonly subject?: string;
  readonly audience?: string;
}

/** Why a request was denied: for audit logs only; callers always get the same 403. */
export type DenyReason = 'unknown_target' | 'no_matching_grant' | 'target_mismatch';

/** The outcome of `authorize`, as a value. */
export type Decision =
  | { readonly allowed: true; readonly account: ServiceAccountEntry; readonly grant: number }
  | { readonly allowed: false; readonly reason: DenyReason };

/**
 * Deny by default (docs/contract.md, "Policy"): allowed only when one grant
 * matches every dimension the request asks for. A request by
 * `serviceAccount` is matched by grants' `serviceAccounts` only; a request by
 * `tenant` resolves to the tenant's one account and is matched by grants'
 * `tenants` only, so a tenant grant never reaches another account.
 */
export function authorize(policy: CompiledPolicy, req: AccessRequest): Decision {
  if ((req.serviceAccount === undefined) === (req.tenant === undefined))
    return { allowed: false, reason: 'target_mismatch' };
  const account =
    req.serviceAccount !== undefined
      ? policy.accounts.get(req.serviceAccount)
      : policy.tenants.get(req.tenant as string);
  if (account === undefined) return { allowed: false, reason: 'unknown_target' };
  for (const grant of policy.grants) {
    if (matches(grant, req, account)) return { allowed: true, account, grant: grant.index };
  }
  return { allowed: false, reason: 'no_matching_grant' };
}

function matches(grant: CompiledGrant, req: AccessRequest, account: ServiceAccountEntry): boolean {
  if (!grant.operations.has(req.operation)) return false;
  if (!grant.callers(req.caller)) return false;
  if (req.serviceAccount !== undefined) {
    if (grant.serviceAccounts === undefined || !grant.serviceAccounts(account.email)) return false;
  } else if (grant.tenants === undefined || account.tenant === undefined || !grant.tenants(account.tenant)) {
    return false;
  }
  for (const scope of req.scopes) if (!grant.scopes.has(scope)) return false;
  if (req.subject === undefined) {
    if (grant.subjects !== undefined) return false;
  } else if (grant.subjects === undefined || !grant.subjects(req.subject)) {
    return false;
  }
  if (req.audience !== undefined && (grant.audiences === undefined || !grant.audiences(req.audience)))
    return false;
  return true;
}

/** Whether the caller may purge the cache. */
export function isAdmin(policy: CompiledPolicy, caller: string): boolean {
  return policy.admins.has(caller);
}

/** The caller's request limit: its own from `rateLimits`, else the policy's `rateLimit`, else none. */
export function rateLimitFor(policy: CompiledPolicy, caller: string): RateLimit | undefined {
  return policy.rateLimits.get(caller) ?? policy.rateLimit;
}

/** The account a purge by service account or tenant covers: one the policy serves, or none. */
export function accountsForPurge(policy: CompiledPolicy, target: Target): readonly string[] {
  const account =
    'serviceAccount' in target
      ? policy.accounts.get(target.serviceAccount)
      : policy.tenants.get(target.tenant);
  return account ? [account.email] : [];
}
