import { createHash } from 'node:crypto';
import { invalidRequest } from '../errors.js';

/**
 * Credential Access Boundaries (docs/contract.md, "Tenants on shared
 * accounts"): the rules a grant's `accessBoundary` names, with `{tenant}`
 * and `{subject}` placeholders, compiled once at start and expanded per
 * request into what Google's STS takes.
 */

/** One rule as Google's STS takes it (`options.accessBoundary.accessBoundaryRules[]`). */
export interface BoundaryRule {
  readonly availableResource: string;
  readonly availablePermissions: readonly string[];
  readonly availabilityCondition?: {
    readonly expression: string;
    readonly title?: string;
    readonly description?: string;
  };
}

/** A boundary with its placeholders still in it, and which placeholders it uses. */
export interface BoundaryTemplate {
  readonly rules: readonly BoundaryRule[];
  readonly usesTenant: boolean;
  readonly usesSubject: boolean;
}

/** An expanded boundary, and the key it is cached and audited under (a hash of its canonical JSON). */
export interface AccessBoundary {
  readonly rules: readonly BoundaryRule[];
  readonly key: string;
}

const MAX_RULES = 10;
const MAX_EXPRESSION = 2048;
const BUCKET_RESOURCE = /^\/\/storage\.googleapis\.com\/projects\/_\/buckets\/([^/\s]{1,222})$/;
/** A bucket name, or one with `{tenant}` in it (which expands to a tenant id, itself a valid name part). */
const BUCKET_NAME = /^(?:[a-z0-9_.-]|\{tenant\})+$/;
const ROLE = /^inRole:roles\/[A-Za-z0-9_.]{1,128}$/;
const PLACEHOLDER = /\{(\w+)\}/g;
const KNOWN = new Set(['tenant', 'subject']);

type Problem = (path: string, text: string) => void;

/**
 * Checks a grant's `accessBoundary` and compiles it; reports each problem
 * with its JSON path. Undefined when it is not usable.
 */
export function compileBoundary(raw: unknown, path: string, problem: Problem): BoundaryTemplate | undefined {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_RULES) {
    problem(path, `must be a list of 1 to ${MAX_RULES} rules`);
    return undefined;
  }
  const rules: BoundaryRule[] = [];
  let ok = true;
  const placeholdersIn = (text: string, at: string) => {
    for (const m of text.matchAll(PLACEHOLDER)) {
      if (!KNOWN.has(m[1] as string)) {
        problem(at, `unknown placeholder {${m[1]}}: only {tenant} and {subject}`);
        ok = false;
      }
    }
  };
  raw.forEach((item, i) => {
    const at = `${path}[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      problem(at, 'must be an object with resource, permissions and an optional condition');
      ok = false;
      return;
    }
    const r = item as Record<string, unknown>;
    for (const key of Object.keys(r)) {
      if (!['resource', 'permissions', 'condition'].includes(key)) {
        problem(at, `unknown key ${JSON.stringify(key)} (allowed: resource, permissions, condition)`);
        ok = false;
      }
    }
    const resource = r['resource'];
    const bucket = typeof resource === 'string' ? BUCKET_RESOURCE.exec(resource)?.[1] : undefined;
    if (bucket === undefined || !BUCKET_NAME.test(bucket) || (resource as string).includes('{subject}')) {
      problem(
        `${at}.resource`,
        'must be //storage.googleapis.com/projects/_/buckets/NAME (NAME may hold {tenant})',
      );
      ok = false;
    }
    const permissions = r['permissions'];
    if (
      !Array.isArray(permissions) ||
      permissions.length === 0 ||
      !permissions.every((p) => typeof p === 'string' && ROLE.test(p))
    ) {
      problem(`${at}.permissions`, 'must be a non-empty list of inRole:roles/... values');
      ok = false;
    }
    let condition: BoundaryRule['availabilityCondition'];
    const c = r['condition'];
    if (c !== undefined) {
      const spec = typeof c === 'string' ? { expression: c } : c;
      const e = spec as Record<string, unknown>;
      const fieldsOk =
        typeof spec === 'object' &&
        spec !== null &&
        Object.keys(e).every((k) => ['expression', 'title', 'description'].includes(k)) &&
        (e['title'] === undefined || typeof e['title'] === 'string') &&
        (e['description'] === undefined || typeof e['description'] === 'string');
      const expression = e['expression'];
      if (!fieldsOk || typeof expression !== 'string' || expression.trim() === '') {
        problem(`${at}.condition`, 'must be a CEL expression, or {"expression", "title", "description"}');
        ok = false;
      } else if (expression.length > MAX_EXPRESSION) {
        problem(`${at}.condition`, `is longer than ${MAX_EXPRESSION} characters`);
        ok = false;
      } else {
        placeholdersIn(expression, `${at}.condition`);
        condition = {
          expression,
          ...(typeof e['title'] === 'string' ? { title: e['title'] } : {}),
          ...(typeof e['description'] === 'string' ? { description: e['description'] } : {}),
        };
      }
    }
    if (typeof resource === 'string') placeholdersIn(resource, `${at}.resource`);
    if (ok) {
      rules.push(
        Object.freeze({
          availableResource: resource as string,
          availablePermissions: Object.freeze([...(permissions as string[])]),
          ...(condition === undefined ? {} : { availabilityCondition: Object.freeze(condition) }),
        }),
      );
    }
  });
  if (!ok) return undefined;
  const text = JSON.stringify(rules);
  return Object.freeze({
    rules: Object.freeze(rules),
    usesTenant: text.includes('{tenant}'),
    usesSubject: text.includes('{subject}'),
  });
}

/** What a subject written into a condition must not hold: a quote, a backslash or whitespace could change it. */
const UNSAFE_IN_CEL = /['"\\\s]/;

/**
 * The boundary for one request: placeholders replaced by its tenant id
 * (already a plain name: letters, digits, `-`, `_`) and subject. Throws
 * `invalid_request` when a placeholder has nothing to expand to, or when
 * the subject would have to go into the boundary and is not a plain email
 * (a quote, a backslash or whitespace could change the condition).
 */
export function expandBoundary(
  template: BoundaryTemplate,
  values: { readonly tenant: string | undefined; readonly subject: string | undefined },
): AccessBoundary {
  if (template.usesTenant && values.tenant === undefined) {
    throw invalidRequest('this grant bounds tokens to a tenant: ask by "tenant", not by "serviceAccount"');
  }
  if (template.usesSubject) {
    if (values.subject === undefined)
      throw invalidRequest('this grant bounds tokens to the subject: give "subject"');
    if (UNSAFE_IN_CEL.test(values.subject)) {
      throw invalidRequest('"subject" must be a plain email to be written into the access boundary');
    }
  }
  const expand = (text: string) =>
    text.replace(PLACEHOLDER, (_, name: string) =>
      name === 'tenant' ? (values.tenant as string) : (values.subject as string),
    );
  const rules = template.rules.map((r) => ({
    availableResource: expand(r.availableResource),
    availablePermissions: r.availablePermissions,
    ...(r.availabilityCondition === undefined
      ? {}
      : {
          availabilityCondition: {
            ...r.availabilityCondition,
            expression: expand(r.availabilityCondition.expression),
          },
        }),
  }));
  return { rules, key: createHash('sha256').update(JSON.stringify(rules)).digest('base64url').slice(0, 22) };
}
