import { SCOPE, TENANT_ID as TENANT, TOKEN_KINDS } from '../../packages/wire/rules.js';
import { canonicalEmail } from '../email.js';
import { ConfigError } from '../errors.js';
import { compileBoundary } from './boundary.js';
import { compileAdmins, compileCallers, compileIssuers, compileRateLimitKeys } from './issuers.js';
import { compileMaxLifetime } from './lifetime.js';
import { compilePatterns } from './patterns.js';
import {
  type CompiledGrant,
  type CompiledPolicy,
  DEFAULT_OPERATIONS,
  type Operation,
  type RateLimit,
  type ServiceAccountEntry,
} from './types.js';

const OPERATIONS: readonly Operation[] = TOKEN_KINDS;
const TOP_KEYS = ['$schema', 'serviceAccounts', 'grants', 'admins', 'rateLimit', 'rateLimits', 'issuers'];
const ACCOUNT_KEYS = ['email', 'key', 'keyless', 'delegates', 'tenant', 'tenants', 'maxLifetimeSeconds'];
const GRANT_KEYS = [
  'callers',
  'serviceAccounts',
  'tenants',
  'scopes',
  'subjects',
  'audiences',
  'operations',
  'accessBoundary',
];
const LIMIT_KEYS = ['requests', 'windowSeconds'];
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
// Secret Manager names: project ids or numbers, secret ids of letters, digits, - and _; versions `latest` or a positive number.
const SECRET_VERSION =
  /^projects\/[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\/secrets\/[A-Za-z0-9_-]{1,255}\/versions\/(?:latest|[1-9]\d{0,18})$/;
// A delegate in an IAM impersonation chain is a service account (IAM names it projects/-/serviceAccounts/EMAIL).
const SERVICE_ACCOUNT_EMAIL =
  /^[a-z0-9][a-z0-9-]{0,62}@(?:[a-z0-9-]{1,63}\.iam|appspot|developer)\.gserviceaccount\.com$/;

type Obj = Record<string, unknown>;

/**
 * Validates a policy (docs/contract.md, "Policy") and compiles it for
 * evaluation. Throws one ConfigError listing every problem with its JSON
 * path, e.g. `grants[2].callers[0]: "Bob@" is not a valid email`.
 * `allowLoopbackIssuers` (`BROKER_ALLOW_LOOPBACK_ISSUERS`) lets an issuer be
 * `http:` on a loopback host.
 */
export function compilePolicy(
  raw: unknown,
  options: { allowLoopbackIssuers?: boolean } = {},
): CompiledPolicy {
  const problems: string[] = [];
  const problem = (path: string, text: string) => problems.push(`${path}: ${text}`);

  const root = object(raw, 'policy', TOP_KEYS, problem);
  if (root === undefined) throw new ConfigError('policy', problems);

  // Trusted issuers (issuers.ts): their names are the prefixes of principals in callers, admins and rateLimits.
  const issuers = compileIssuers(root['issuers'], problem, {
    allowLoopbackIssuers: options.allowLoopbackIssuers === true,
  });
  const issuerNames = new Set(issuers.map((i) => i.name));

  // Service accounts and tenants.
  const accounts = new Map<string, ServiceAccountEntry>();
  const tenants = new Map<string, ServiceAccountEntry>();
  let anyTenant: ServiceAccountEntry | undefined;
  const accountList = list(root['serviceAccounts'], 'serviceAccounts', problem, {
    required: true,
    nonEmpty: true,
  });
  accountList.forEach((item, i) => {
    const path = `serviceAccounts[${i}]`;
    const a = object(item, path, ACCOUNT_KEYS, problem);
    if (a === undefined) return;
    const email = canonicalEmail(a['email']);
    if (email === undefined) problem(`${path}.email`, `${JSON.stringify(a['email'])} is not a valid email`);
    else if (accounts.has(email)) problem(`${path}.email`, `${email} is listed twice`);
    // Problems of a whole entry name it by email as well as by position.
    const entryPath = email === undefined ? path : `${path} (${email})`;
    const key = a['key'];
    const keyless = a['keyless'];
    if (keyless !== undefined && typeof keyless !== 'boolean')
      problem(`${entryPath}.keyless`, 'must be true or absent');
    if (key !== undefined && keyless === true) {
      problem(entryPath, 'has both `key` and `keyless`; give exactly one');
    } else if (keyless !== true) {
      if (key === undefined)
        problem(entryPath, 'needs exactly one of `key` (a secret version) or `"keyless": true`');
      else if (
        typeof key !== 'string' ||
        !(SECRET_VERSION.test(key) || (key.startsWith('file:') && key.length > 5))
      ) {
        problem(
          `${path}.key`,
          'must be `projects/P/secrets/S/versions/V` (V = latest or a number) or `file:PATH`',
        );
      }
    }
    const delegates: string[] = [];
    if (a['delegates'] !== undefined) {
      if (keyless !== true) {
        problem(
          `${entryPath}.delegates`,
          'is only for keyless accounts (`"keyless": true`): IAM follows the chain',
        );
      }
      list(a['delegates'], `${path}.delegates`, problem, { required: true }).forEach((d, j) => {
        const delegate = canonicalEmail(d);
        if (delegate === undefined || !SERVICE_ACCOUNT_EMAIL.test(delegate)) {
          problem(
            `${entryPath}.delegates[${j}]`,
            `${JSON.stringify(d)} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)`,
          );
        } else if (delegate === email || delegates.includes(delegate)) {
          problem(`${entryPath}.delegates[${j}]`, `${delegate} appears twice in the chain`);
        } else delegates.push(delegate);
      });
    }
    const ids = tenantIds(a, path, problem);
    const maxLifetimeSeconds = compileMaxLifetime(a['maxLifetimeSeconds'], keyless === true, (text) =>
      problem(`${entryPath}.maxLifetimeSeconds`, text),
    );
    if (email === undefined || ids === undefined) return;
    const base = {
      email,
      tenants: Object.freeze(ids.filter((t) => t !== '*')),
      anyTenant: ids.includes('*'),
      shared: ids.includes('*') || ids.length > 1,
    };
    let entry: ServiceAccountEntry;
    if (keyless === true)
      entry = Object.freeze({
        ...base,
        mode: 'keyless',
        delegates: Object.freeze(delegates),
        maxLifetimeSeconds,
      });
    else if (typeof key === 'string') entry = Object.freeze({ ...base, mode: 'keyed', key });
    else return;
    if (accounts.has(email)) return;
    accounts.set(email, entry);
    // An exact mapping wins over `*`; an id on two accounts, or two `*` accounts, stop the start.
    for (const t of entry.tenants) {
      const other = tenants.get(t);
      const at = a['tenant'] !== undefined ? `${path}.tenant` : `${path}.tenants`;
      if (other !== undefined) problem(at, `tenant "${t}" already maps to ${other.email}`);
      else tenants.set(t, entry);
    }
    if (entry.anyTenant) {
      if (anyTenant !== undefined) problem(`${path}.tenants`, `"*" is already served by ${anyTenant.email}`);
      else anyTenant = entry;
    }
  });

  // Grants.
  const grants: CompiledGrant[] = [];
  /** Each grant's `tenants` patterns as written, for the safety rule once every grant is read. */
  const grantTenants = new Map<number, readonly unknown[]>();
  list(root['grants'], 'grants', problem, { required: true }).forEach((item, i) => {
    const path = `grants[${i}]`;
    const g = object(item, path, GRANT_KEYS, problem);
    if (g === undefined) return;
    const patterns = (field: string, email: boolean, required: boolean) => {
      const values = list(g[field], `${path}.${field}`, problem, {
        required,
        nonEmpty: g[field] !== undefined,
      });
      if (g[field] === undefined) return undefined;
      const report = (j: number, p: string) => problem(`${path}.${field}[${j}]`, p);
      // Callers are emails or the principals of trusted issuers (issuers.ts).
      return field === 'callers'
        ? compileCallers(values, issuerNames, report)
        : compilePatterns(values, { email }, report);
    };
    const callers = patterns('callers', true, true) ?? (() => false);
    const serviceAccounts = patterns('serviceAccounts', true, false);
    const tenantsMatcher = patterns('tenants', false, false);
    if (Array.isArray(g['tenants'])) grantTenants.set(i, g['tenants']);
    if (serviceAccounts === undefined && tenantsMatcher === undefined) {
      problem(path, 'needs `serviceAccounts` or `tenants`');
    }
    // Typo guard: an exact name must exist in the policy.
    for (const [field, known] of [
      ['serviceAccounts', (v: string) => accounts.has(canonicalEmail(v) ?? v)],
      ['tenants', (v: string) => tenants.has(v) || anyTenant !== undefined],
    ] as const) {
      const values = g[field];
      if (!Array.isArray(values)) continue;
      values.forEach((v, j) => {
        if (typeof v === 'string' && !v.includes('*') && !known(v)) {
          problem(
            `${path}.${field}[${j}]`,
            `${JSON.stringify(v)} is not listed in ${field === 'tenants' ? 'any serviceAccounts[].tenant or tenants' : 'serviceAccounts'}`,
          );
        }
      });
    }
    const scopes = new Set<string>();
    list(g['scopes'], `${path}.scopes`, problem, { required: false }).forEach((s, j) => {
      if (typeof s !== 'string' || !SCOPE.test(s))
        problem(`${path}.scopes[${j}]`, 'must be one scope: no whitespace, no comma');
      else scopes.add(s);
    });
    const subjects = patterns('subjects', true, false);
    const audiences =
      g['audiences'] === undefined
        ? undefined
        : audienceMatcher(g['audiences'], `${path}.audiences`, problem);
    const operations = new Set<Operation>();
    if (g['operations'] === undefined) for (const op of DEFAULT_OPERATIONS) operations.add(op);
    else {
      list(g['operations'], `${path}.operations`, problem, { required: true, nonEmpty: true }).forEach(
        (op, j) => {
          if (typeof op !== 'string' || !OPERATIONS.includes(op as Operation)) {
            problem(`${path}.operations[${j}]`, `must be one of ${OPERATIONS.join(', ')}`);
          } else operations.add(op as Operation);
        },
      );
    }
    if (operations.has('token') && scopes.size === 0)
      problem(`${path}.scopes`, 'a grant for `token` needs at least one scope');
    const boundary =
      g['accessBoundary'] === undefined
        ? undefined
        : compileBoundary(g['accessBoundary'], `${path}.accessBoundary`, problem);
    if (g['accessBoundary'] !== undefined && [...operations].some((op) => op !== 'token')) {
      problem(
        `${path}.operations`,
        'a grant with accessBoundary allows only `token`: a Credential Access Boundary bounds access tokens, not JWTs or ID tokens',
      );
    }
    grants.push(
      Object.freeze({
        index: i,
        boundary,
        callers,
        serviceAccounts,
        tenants: tenantsMatcher,
        tenantPatterns: Array.isArray(g['tenants'])
          ? Object.freeze(g['tenants'].filter((t): t is string => typeof t === 'string'))
          : undefined,
        scopes,
        subjects,
        audiences,
        operations,
      }),
    );
  });

  // Admins and rate limits.
  // Admins and rate limits: exact emails, or principals (exact or a prefix), as issuers.ts compiles them.
  const admins = compileAdmins(
    list(root['admins'], 'admins', problem, { required: false }),
    issuerNames,
    canonicalEmail,
    (i, text) => problem(`admins[${i}]`, text),
  );
  const rateLimit =
    root['rateLimit'] === undefined ? undefined : limit(root['rateLimit'], 'rateLimit', problem);
  const per =
    root['rateLimits'] === undefined ? {} : object(root['rateLimits'], 'rateLimits', undefined, problem);
  const rateLimits = compileRateLimitKeys(
    Object.entries(per ?? {}).map(
      ([caller, value]) => [caller, limit(value, `rateLimits[${JSON.stringify(caller)}]`, problem)] as const,
    ),
    issuerNames,
    canonicalEmail,
    (caller, text) => problem(`rateLimits[${JSON.stringify(caller)}]`, text),
  );

  for (const grant of grants) {
    const patterns = grantTenants.get(grant.index);
    if (patterns !== undefined) checkSharedTenants(grant, patterns, tenants, anyTenant, problem);
  }

  if (problems.length > 0) throw new ConfigError('policy', problems);
  return Object.freeze({
    accounts,
    tenants,
    anyTenant,
    grants: Object.freeze(grants),
    admins,
    rateLimit,
    rateLimits,
    issuers: Object.freeze(issuers),
  });
}

/** The tenant ids an account entry serves: `tenant`, or `tenants` (ids, or `["*"]`); undefined on a problem. */
function tenantIds(a: Obj, path: string, problem: (p: string, t: string) => void): string[] | undefined {
  const one = a['tenant'];
  const many = a['tenants'];
  if (one !== undefined && many !== undefined) {
    problem(path, 'give `tenant` or `tenants`, not both');
    return undefined;
  }
  const ids: string[] = [];
  let ok = true;
  const check = (t: unknown, at: string) => {
    if (typeof t === 'string' && (TENANT.test(t) || (t === '*' && many !== undefined))) {
      if (ids.includes(t)) {
        problem(at, `tenant "${t}" is listed twice`);
        ok = false;
      } else ids.push(t);
    } else {
      problem(at, 'must be a tenant id: lower-case letters, digits, "-" or "_", at most 63 characters');
      ok = false;
    }
  };
  if (one !== undefined) check(one, `${path}.tenant`);
  if (many !== undefined) {
    list(many, `${path}.tenants`, problem, { required: true, nonEmpty: true }).forEach((t, j) => {
      check(t, `${path}.tenants[${j}]`);
    });
    if (ids.includes('*') && ids.length > 1) {
      problem(`${path}.tenants`, '`*` stands alone: it is every tenant id not mapped elsewhere');
      ok = false;
    }
  }
  return ok ? ids : undefined;
}

/**
 * The safety rule (docs/contract.md, "Tenants on shared accounts"): a grant
 * that can match a tenant of an account shared by several tenants must bound
 * its tokens with an access boundary that uses `{tenant}`. Without one every
 * tenant would get the same unbounded token of that account. A grant's
 * tenant patterns are `*` (every tenant), or ids: mapped exactly, or else
 * served by the `*` account.
 */
function checkSharedTenants(
  grant: CompiledGrant,
  patterns: readonly unknown[],
  tenants: ReadonlyMap<string, ServiceAccountEntry>,
  anyTenant: ServiceAccountEntry | undefined,
  problem: (p: string, t: string) => void,
): void {
  const reached = new Set<ServiceAccountEntry>();
  for (const p of patterns) {
    if (p === '*') {
      for (const entry of tenants.values()) reached.add(entry);
      if (anyTenant !== undefined) reached.add(anyTenant);
    } else if (typeof p === 'string') {
      const entry = tenants.get(p) ?? anyTenant;
      if (entry !== undefined) reached.add(entry);
    }
  }
  const shared = [...reached].filter((e) => e.shared).map((e) => e.email);
  if (shared.length === 0 || grant.boundary?.usesTenant === true) return;
  const which = shared.sort().join(', ');
  problem(
    `grants[${grant.index}]`,
    grant.boundary === undefined
      ? `reaches tenants of ${which}, shared by several tenants, without an accessBoundary: every tenant would get the same unbounded token. Add an accessBoundary that uses {tenant}`
      : `reaches tenants of ${which}, shared by several tenants, with an accessBoundary that does not use {tenant}: every tenant would get the same boundary`,
  );
}

function object(
  value: unknown,
  path: string,
  allowed: readonly string[] | undefined,
  problem: (p: string, t: string) => void,
): Obj | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problem(path, 'must be a JSON object');
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (FORBIDDEN_KEYS.has(key)) problem(path, `the key ${JSON.stringify(key)} is not allowed`);
    else if (allowed !== undefined && !allowed.includes(key)) {
      problem(path, `unknown key ${JSON.stringify(key)} (allowed: ${allowed.join(', ')})`);
    }
  }
  // JSON null means absent (Terraform's jsonencode writes unset optional attributes as null).
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null)) as Obj;
}

function list(
  value: unknown,
  path: string,
  problem: (p: string, t: string) => void,
  options: { required: boolean; nonEmpty?: boolean },
): readonly unknown[] {
  if (value === undefined) {
    if (options.required) problem(path, 'is required');
    return [];
  }
  if (!Array.isArray(value)) {
    problem(path, 'must be an array');
    return [];
  }
  if (options.nonEmpty && value.length === 0) problem(path, 'must not be empty');
  return value;
}

function audienceMatcher(
  value: unknown,
  path: string,
  problem: (p: string, t: string) => void,
): (v: string) => boolean {
  const exact = new Set<string>();
  let any = false;
  list(value, path, problem, { required: true, nonEmpty: true }).forEach((a, i) => {
    if (a === '*') any = true;
    else if (typeof a !== 'string' || !URL.canParse(a) || new URL(a).protocol !== 'https:') {
      problem(`${path}[${i}]`, 'must be an https URL or `*`');
    } else exact.add(a);
  });
  return (v) => any || exact.has(v);
}

function limit(value: unknown, path: string, problem: (p: string, t: string) => void): RateLimit | undefined {
  const o = object(value, path, LIMIT_KEYS, problem);
  if (o === undefined) return undefined;
  const requests = o['requests'];
  const windowSeconds = o['windowSeconds'];
  let ok = true;
  if (
    typeof requests !== 'number' ||
    !Number.isInteger(requests) ||
    requests < 1 ||
    requests > 1_000_000_000
  ) {
    problem(`${path}.requests`, 'must be a positive integer');
    ok = false;
  }
  if (
    typeof windowSeconds !== 'number' ||
    !Number.isInteger(windowSeconds) ||
    windowSeconds < 1 ||
    windowSeconds > 86_400
  ) {
    problem(`${path}.windowSeconds`, 'must be an integer from 1 to 86400');
    ok = false;
  }
  return ok
    ? Object.freeze({ requests: requests as number, windowSeconds: windowSeconds as number })
    : undefined;
}
