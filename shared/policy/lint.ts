import { issuerWarnings } from './issuers.js';
import type { CompiledGrant, CompiledPolicy, ServiceAccountEntry } from './types.js';

/**
 * What is valid but probably wrong in a policy (docs/contract.md, "Policy
 * as code"): each finding names the grant or account by its JSON path. The
 * broker logs them as one WARNING at start and on every new version;
 * `broker-token policy check` prints them.
 */
export function policyFindings(policy: CompiledPolicy): string[] {
  const findings: string[] = [];
  const open = policy.grants.filter((g) => g.callers(ANY_CALLER_PROBE)).map((g) => `grants[${g.index}]`);
  if (open.length > 0) {
    findings.push(
      `${open.join(', ')} ${open.length === 1 ? 'has' : 'have'} callers ["*"]: any caller with a Google ID token for this broker's audience can use ${open.length === 1 ? 'it' : 'them'}; only Cloud Run's IAM invoker check stands in the way. Name the callers, or a domain ("*@example.com").`,
    );
  }
  const unguarded = issuerWarnings(policy.issuers);
  if (unguarded !== undefined) findings.push(unguarded);
  const entries = [...policy.accounts.values()];
  const reached = new Set<ServiceAccountEntry>();
  for (const grant of policy.grants) {
    const byAccount = entries.filter((e) => grant.serviceAccounts?.(e.email) === true);
    const byTenant = tenantsReached(grant, policy);
    for (const e of [...byAccount, ...byTenant]) reached.add(e);
    const never = neverMatches(grant, byAccount.length + byTenant.length);
    if (never !== undefined) findings.push(`grants[${grant.index}] can never match: ${never}`);
    for (const e of byAccount) {
      if (e.shared && grant.boundary === undefined) {
        findings.push(
          `grants[${grant.index}] reaches ${e.email}, an account shared by several tenants, by serviceAccount and without an accessBoundary: its callers get a token that reaches every tenant's data`,
        );
      }
    }
  }
  entries.forEach((e, i) => {
    if (!reached.has(e)) findings.push(`serviceAccounts[${i}] (${e.email}) is reached by no grant`);
  });
  return findings;
}

/** The accounts a grant's `tenants` reach: each id's account (or the `*` account), all of them for `*`. */
function tenantsReached(grant: CompiledGrant, policy: CompiledPolicy): ServiceAccountEntry[] {
  const out = new Set<ServiceAccountEntry>();
  for (const p of grant.tenantPatterns ?? []) {
    if (p === '*') {
      for (const e of policy.tenants.values()) out.add(e);
      if (policy.anyTenant !== undefined) out.add(policy.anyTenant);
    } else {
      const e = policy.tenants.get(p) ?? policy.anyTenant;
      if (e !== undefined) out.add(e);
    }
  }
  return [...out];
}

/** Why no request can ever match a grant, or undefined. */
function neverMatches(grant: CompiledGrant, accountsReached: number): string | undefined {
  if (accountsReached === 0) return 'its serviceAccounts and tenants name no account in the policy';
  const ops = grant.operations;
  if (grant.subjects !== undefined && !ops.has('token'))
    return 'it lists subjects, which only token requests carry, but allows no token';
  if (grant.audiences === undefined && ops.size === 1 && ops.has('idtoken'))
    return 'an ID token is always for an audience, and it lists no audiences';
  if (grant.audiences === undefined && grant.scopes.size === 0 && !ops.has('token'))
    return 'a JWT is for an audience or for scopes, and it lists neither';
  return undefined;
}

/** An address no sane caller pattern names: a grant whose `callers` match it matches every caller. */
const ANY_CALLER_PROBE = 'any-caller-probe@example.invalid';
