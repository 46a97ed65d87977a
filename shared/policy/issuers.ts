import { urlProblem } from '../../packages/wire/rules.js';
import { compilePattern } from './patterns.js';
import type { CompiledIssuer, Matcher, PrincipalLookup, RateLimit } from './types.js';

/**
 * Trusted OIDC issuers and the principals of their callers
 * (docs/contract.md, "Trusted issuers" and "Principals"): compiled from the
 * policy's `issuers`, and the caller patterns of `callers`, `admins` and
 * `rateLimits`, which take both Google callers' emails and `NAME:SUB`
 * principals.
 */

/** An issuer's `name`: the prefix of its callers' principals. */
export const ISSUER_NAME = /^[a-z][a-z0-9-]{0,30}$/;

/** Google's own issuers: a policy issuer never names them (Google callers are verified by `BROKER_ISSUERS`). */
const GOOGLE_ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];
const ISSUER_KEYS = ['name', 'issuer', 'audiences', 'claims', 'jwksUri'];
const MAX_ISSUERS = 20;
const MAX_AUDIENCES = 20;
const MAX_CLAIMS = 20;
const CLAIM_NAME = /^[\x21-\x7e]{1,100}$/;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

type Problem = (path: string, text: string) => void;

/** Whether a caller string is an issuer's principal (`NAME:SUB`) rather than a Google caller's email. */
export function isPrincipal(value: string): boolean {
  // Emails never hold a colon (shared/email.ts); every principal does, right after its issuer's name.
  return value.includes(':');
}

/**
 * What is wrong with an issuer's URL or a key set's URL: `https:`, or
 * `http:` on a loopback host only when `allowLoopback`
 * (`BROKER_ALLOW_LOOPBACK_ISSUERS`); no user info, query or fragment.
 */
export function issuerUrlProblem(value: unknown, allowLoopback: boolean): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return 'must be a URL';
  const problem = urlProblem(value);
  if (problem !== undefined) return problem;
  const u = new URL(value);
  if (u.protocol === 'http:' && !allowLoopback)
    return 'must be https (http on a loopback host only with BROKER_ALLOW_LOOPBACK_ISSUERS=true)';
  if (u.search !== '' || u.hash !== '') return 'must have no query or fragment';
  return undefined;
}

/** Validates and compiles the policy's `issuers`, reporting problems with their JSON path. */
export function compileIssuers(
  value: unknown,
  problem: Problem,
  options: { allowLoopbackIssuers: boolean },
): CompiledIssuer[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problem('issuers', 'must be an array');
    return [];
  }
  if (value.length > MAX_ISSUERS) problem('issuers', `holds more than ${MAX_ISSUERS} issuers`);
  const out: CompiledIssuer[] = [];
  const names = new Set<string>();
  const urls = new Set<string>();
  value.forEach((item, i) => {
    const path = `issuers[${i}]`;
    const o = plainObject(item, path, ISSUER_KEYS, problem);
    if (o === undefined) return;
    let ok = true;
    const name = o['name'];
    if (typeof name !== 'string' || !ISSUER_NAME.test(name)) {
      problem(`${path}.name`, 'must match ^[a-z][a-z0-9-]{0,30}$');
      ok = false;
    } else if (names.has(name)) {
      problem(`${path}.name`, `"${name}" is used twice`);
      ok = false;
    } else names.add(name);
    const issuer = o['issuer'];
    const issuerProblem = issuerUrlProblem(issuer, options.allowLoopbackIssuers);
    if (issuerProblem !== undefined) {
      problem(`${path}.issuer`, issuerProblem);
      ok = false;
    } else if (GOOGLE_ISSUERS.includes((issuer as string).replace(/\/+$/, ''))) {
      problem(`${path}.issuer`, "is Google's own: Google callers need no issuer entry");
      ok = false;
    } else if (urls.has(issuer as string)) {
      problem(`${path}.issuer`, `${issuer as string} is listed twice`);
      ok = false;
    } else urls.add(issuer as string);
    const audiences = new Set<string>();
    const rawAudiences = o['audiences'];
    if (!Array.isArray(rawAudiences) || rawAudiences.length === 0) {
      problem(`${path}.audiences`, 'must be a non-empty array of strings');
      ok = false;
    } else if (rawAudiences.length > MAX_AUDIENCES) {
      problem(`${path}.audiences`, `holds more than ${MAX_AUDIENCES} audiences`);
      ok = false;
    } else {
      rawAudiences.forEach((a, j) => {
        if (typeof a !== 'string' || a.length === 0 || a.length > 2048 || a.includes('*')) {
          problem(`${path}.audiences[${j}]`, 'must be a non-empty string without `*`');
          ok = false;
        } else audiences.add(a);
      });
    }
    const claims = compileClaims(o['claims'], `${path}.claims`, problem);
    if (claims === undefined) ok = false;
    let jwksUri: string | undefined;
    if (o['jwksUri'] !== undefined) {
      const p = issuerUrlProblem(o['jwksUri'], options.allowLoopbackIssuers);
      if (p !== undefined) {
        problem(`${path}.jwksUri`, p);
        ok = false;
      } else jwksUri = o['jwksUri'] as string;
    }
    if (!ok) return;
    out.push(
      Object.freeze({
        index: i,
        name: name as string,
        issuer: issuer as string,
        audiences,
        claims: claims as CompiledIssuer['claims'],
        jwksUri,
      }),
    );
  });
  return out;
}

/** The `claims` guard: claim names to an exact value, or a prefix when the value ends in `*`. */
function compileClaims(value: unknown, path: string, problem: Problem): CompiledIssuer['claims'] | undefined {
  if (value === undefined) return Object.freeze([]);
  const o = plainObject(value, path, undefined, problem);
  if (o === undefined) return undefined;
  const entries = Object.entries(o);
  if (entries.length === 0) {
    problem(path, 'must name at least one claim, or be left out');
    return undefined;
  }
  if (entries.length > MAX_CLAIMS) {
    problem(path, `names more than ${MAX_CLAIMS} claims`);
    return undefined;
  }
  const guards: Array<{ claim: string; matches: Matcher; text: string }> = [];
  let ok = true;
  for (const [claim, expected] of entries) {
    if (!CLAIM_NAME.test(claim)) {
      problem(path, `${JSON.stringify(claim.slice(0, 100))} is not a claim name`);
      ok = false;
    } else if (typeof expected !== 'string' || expected.length === 0 || expected.length > 1024) {
      problem(`${path}.${claim}`, 'must be a non-empty string (a value ending in `*` matches by prefix)');
      ok = false;
    } else if (expected.indexOf('*') !== -1 && expected.indexOf('*') !== expected.length - 1) {
      problem(`${path}.${claim}`, '`*` is allowed only at the end, as a prefix');
      ok = false;
    } else {
      const prefix = expected.endsWith('*') ? expected.slice(0, -1) : undefined;
      guards.push({
        claim,
        text: expected,
        matches: prefix === undefined ? (v: string) => v === expected : (v: string) => v.startsWith(prefix),
      });
    }
  }
  return ok ? Object.freeze(guards) : undefined;
}

/**
 * Compiles one caller pattern of `callers`, `admins` or `rateLimits`: a
 * principal `NAME:SUB`, exact or a prefix ending in `*`, whose `NAME` is a
 * configured issuer; or else an email pattern as before (`*@domain`; `*`
 * alone matches every Google caller, never an issuer's principal). Exact
 * emails only when `exactEmails`. Returns the matcher, or a problem.
 */
export function compileCallerPattern(
  pattern: unknown,
  issuerNames: ReadonlySet<string>,
  options: { exactEmails: boolean } = { exactEmails: false },
): Matcher | string {
  if (typeof pattern === 'string' && isPrincipal(pattern)) {
    const colon = pattern.indexOf(':');
    const name = pattern.slice(0, colon);
    const rest = pattern.slice(colon + 1);
    if (!issuerNames.has(name))
      return `${JSON.stringify(pattern.slice(0, 200))}: no issuer in \`issuers\` is named ${JSON.stringify(name.slice(0, 40))}`;
    if (rest.length === 0 || pattern.length > 1024 || /\p{Cc}/u.test(pattern))
      return `${JSON.stringify(pattern.slice(0, 200))} is not a principal (NAME:SUB, or a prefix ending in \`*\`)`;
    const star = pattern.indexOf('*');
    if (star === -1) return (value) => value === pattern;
    if (star !== pattern.length - 1)
      return `${JSON.stringify(pattern.slice(0, 200))}: \`*\` is allowed only at the end of a principal, as a prefix`;
    const prefix = pattern.slice(0, -1);
    return (value) => value.startsWith(prefix);
  }
  if (pattern === '*') {
    if (options.exactEmails)
      return 'must be an exact email or a principal (NAME:SUB, or a prefix ending in `*`)';
    // Adding an issuer must not widen an existing grant: `*` stays "any Google caller".
    return (value) => !isPrincipal(value);
  }
  if (options.exactEmails && typeof pattern === 'string' && pattern.startsWith('*@'))
    return 'must be an exact email or a principal (NAME:SUB, or a prefix ending in `*`)';
  return compilePattern(pattern, { email: true });
}

/** Compiles a `callers` list into one matcher, reporting each bad pattern by index. */
export function compileCallers(
  list: readonly unknown[],
  issuerNames: ReadonlySet<string>,
  problems: (index: number, problem: string) => void,
): Matcher {
  const matchers: Matcher[] = [];
  list.forEach((p, i) => {
    const m = compileCallerPattern(p, issuerNames);
    if (typeof m === 'string') problems(i, m);
    else matchers.push(m);
  });
  return (value) => matchers.some((m) => m(value));
}

/**
 * A lookup by caller: exact keys first, then the longest matching principal
 * prefix. For `admins` (a set) and `rateLimits` (a map), so that the policy
 * decision (`evaluate.ts`) asks `has` and `get` as of a plain Set and Map.
 */
export class CallerTable<V> implements PrincipalLookup<V> {
  readonly #exact = new Map<string, V>();
  readonly #prefixes: Array<{ prefix: string; value: V }> = [];

  /** Adds a compiled pattern's entry: exact (an email or a principal) or a principal prefix (`NAME:...*`). */
  add(pattern: string, value: V): void {
    if (isPrincipal(pattern) && pattern.endsWith('*')) {
      this.#prefixes.push({ prefix: pattern.slice(0, -1), value });
      this.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    } else this.#exact.set(pattern, value);
  }

  get(caller: string): V | undefined {
    const exact = this.#exact.get(caller);
    if (exact !== undefined || !isPrincipal(caller)) return exact;
    return this.#prefixes.find((p) => caller.startsWith(p.prefix))?.value;
  }

  has(caller: string): boolean {
    return this.get(caller) !== undefined;
  }

  get size(): number {
    return this.#exact.size + this.#prefixes.length;
  }
}

/** The `admins` list: exact emails, exact principals and principal prefixes. */
export function compileAdmins(
  list: readonly unknown[],
  issuerNames: ReadonlySet<string>,
  canonical: (email: unknown) => string | undefined,
  problem: (index: number, text: string) => void,
): CallerTable<true> {
  const table = new CallerTable<true>();
  list.forEach((a, i) => {
    const key = callerKey(a, issuerNames, canonical);
    if (key.problem !== undefined)
      problem(
        i,
        key.problem ??
          `${JSON.stringify(a)} is not a valid email (admins are exact emails, or principals: NAME:SUB or a prefix ending in \`*\`)`,
      );
    else table.add(key.key, true);
  });
  return table;
}

/** The `rateLimits` object: its keys are exact emails, exact principals or principal prefixes. */
export function compileRateLimitKeys(
  entries: ReadonlyArray<readonly [string, RateLimit | undefined]>,
  issuerNames: ReadonlySet<string>,
  canonical: (email: unknown) => string | undefined,
  problem: (key: string, text: string) => void,
): CallerTable<RateLimit> {
  const table = new CallerTable<RateLimit>();
  for (const [caller, limit] of entries) {
    const key = callerKey(caller, issuerNames, canonical);
    if (key.problem !== undefined)
      problem(
        caller,
        key.problem ?? 'keys must be exact caller emails, or principals (NAME:SUB or a prefix ending in `*`)',
      );
    else if (limit !== undefined) table.add(key.key, limit);
  }
  return table;
}

/** A caller key of `admins` or `rateLimits`: a canonical email, or a principal (pattern) checked against the issuers. */
function callerKey(
  value: unknown,
  issuerNames: ReadonlySet<string>,
  canonical: (email: unknown) => string | undefined,
): { key: string; problem?: undefined } | { key?: undefined; problem: string | null } {
  if (typeof value === 'string' && isPrincipal(value)) {
    const m = compileCallerPattern(value, issuerNames, { exactEmails: true });
    return typeof m === 'string' ? { problem: m } : { key: value };
  }
  const email = canonical(value);
  // null: not an email, and the caller words it.
  return email === undefined ? { problem: null } : { key: email };
}

/**
 * Start-up warnings about issuers that are valid but risky: an issuer
 * without a `claims` guard admits any token it signs for these audiences (on
 * GitHub, any repository's workflow can ask for any audience). One text, or none.
 */
export function issuerWarnings(issuers: readonly CompiledIssuer[]): string | undefined {
  const open = issuers.filter((i) => i.claims.length === 0).map((i) => `issuers[${i.index}] (${i.name})`);
  if (open.length === 0) return undefined;
  return `${open.join(', ')} ${open.length === 1 ? 'has' : 'have'} no \`claims\` guard: every token ${open.length === 1 ? 'that issuer signs' : 'those issuers sign'} for the listed audiences is a caller, and only the grants' principal patterns tell them apart. Add a guard such as {"repository_owner": "your-org"} for GitHub.`;
}

function plainObject(
  value: unknown,
  path: string,
  allowed: readonly string[] | undefined,
  problem: Problem,
): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problem(path, 'must be a JSON object');
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (FORBIDDEN_KEYS.has(key)) problem(path, `the key ${JSON.stringify(key)} is not allowed`);
    else if (allowed !== undefined && !allowed.includes(key))
      problem(path, `unknown key ${JSON.stringify(key)} (allowed: ${allowed.join(', ')})`);
  }
  // JSON null means absent, as everywhere in the policy.
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null));
}
