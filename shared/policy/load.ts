import { SCOPE, TENANT_ID as TENANT, TOKEN_KINDS } from '../../packages/wire/rules.js';
import { canonicalEmail } from '../email.js';
import { ConfigError } from '../errors.js';
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
const TOP_KEYS = ['serviceAccounts', 'grants', 'admins', 'rateLimit', 'rateLimits', 'issuers'];
const ACCOUNT_KEYS = ['email', 'key', 'keyless', 'delegates', 'tenant', 'maxLifetimeSeconds'];
const GRANT_KEYS = ['callers', 'serviceAccounts', 'tenants', 'scopes', 'subjects', 'audiences', 'operations'];
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
    const tenant = a['tenant'];
    if (tenant !== undefined) {
      if (typeof tenant !== 'string' || !TENANT.test(tenant)) {
        problem(
          `${path}.tenant`,
          'must be a tenant id: lower-case letters, digits, "-" or "_", at most 63 characters',
        );
      } else if (tenants.has(tenant)) {
        problem(`${path}.tenant`, `tenant "${tenant}" already maps to another service account`);
      }
    }
    if (email === undefined) return;
    const base = { email, tenant: typeof tenant === 'string' ? tenant : undefined };
    const maxLifetimeSeconds = compileMaxLifetime(a['maxLifetimeSeconds'], keyless === true, (text) =>
      problem(`${entryPath}.maxLifetimeSeconds`, text),
    );
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
    if (!accounts.has(email)) accounts.set(email, entry);
    if (typeof tenant === 'string' && TENANT.test(tenant) && !tenants.has(tenant)) tenants.set(tenant, entry);
  });

  // Grants.
  const grants: CompiledGrant[] = [];
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
    if (serviceAccounts === undefined && tenantsMatcher === undefined) {
      problem(path, 'needs `serviceAccounts` or `tenants`');
    }
    // Typo guard: an exact name must exist in the policy.
    for (const [field, known] of [
      ['serviceAccounts', (v: string) => accounts.has(canonicalEmail(v) ?? v)],
      ['tenants', (v: string) => tenants.has(v)],
    ] as const) {
      const values = g[field];
      if (!Array.isArray(values)) continue;
      values.forEach((v, j) => {
        if (typeof v === 'string' && !v.includes('*') && !known(v)) {
          problem(
            `${path}.${field}[${j}]`,
            `${JSON.stringify(v)} is not listed in ${field === 'tenants' ? 'any serviceAccounts[].tenant' : 'serviceAccounts'}`,
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
    grants.push(
      Object.freeze({
        index: i,
        callers,
        serviceAccounts,
        tenants: tenantsMatcher,
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

  if (problems.length > 0) throw new ConfigError('policy', problems);
  return Object.freeze({
    accounts,
    tenants,
    grants: Object.freeze(grants),
    admins,
    rateLimit,
    rateLimits,
    issuers: Object.freeze(issuers),
  });
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

/** An address no sane caller pattern names: a grant whose `callers` match it matches every caller. */
const ANY_CALLER_PROBE = 'any-caller-probe@example.invalid';

/**
 * Start-up warnings about a policy that is valid but risky: grants whose
 * `callers` are `"*"`. Anyone can get a Google-signed ID token for any
 * audience, so such a grant is open to every Google account that Cloud Run's
 * IAM lets through. One text, or none.
 */
export function policyWarnings(policy: CompiledPolicy): string | undefined {
  const open = policy.grants.filter((g) => g.callers(ANY_CALLER_PROBE)).map((g) => `grants[${g.index}]`);
  if (open.length === 0) return undefined;
  return `${open.join(', ')} ${open.length === 1 ? 'has' : 'have'} callers ["*"]: any caller with a Google ID token for this broker's audience can use ${open.length === 1 ? 'it' : 'them'}; only Cloud Run's IAM invoker check stands in the way. Name the callers, or a domain ("*@example.com").`;
}
