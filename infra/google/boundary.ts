import { type CelCondition, CelParseError, parseCondition } from './cel.js';

/** The Cloud Storage permissions the Storage stand-in checks. */
export type StoragePermission =
  | 'storage.objects.get'
  | 'storage.objects.list'
  | 'storage.objects.create'
  | 'storage.objects.delete';

/**
 * Storage roles and the object permissions each grants, per Google's
 * predefined-role reference (the object permissions only: bucket, folder and
 * multipart permissions are left out, as the stand-in serves no such method).
 */
export const STORAGE_ROLES: Readonly<Record<string, readonly StoragePermission[]>> = {
  'roles/storage.objectViewer': ['storage.objects.get', 'storage.objects.list'],
  'roles/storage.objectCreator': ['storage.objects.create'],
  'roles/storage.objectUser': [
    'storage.objects.get',
    'storage.objects.list',
    'storage.objects.create',
    'storage.objects.delete',
  ],
  'roles/storage.objectAdmin': [
    'storage.objects.get',
    'storage.objects.list',
    'storage.objects.create',
    'storage.objects.delete',
  ],
  'roles/storage.admin': [
    'storage.objects.get',
    'storage.objects.list',
    'storage.objects.create',
    'storage.objects.delete',
  ],
  'roles/storage.legacyObjectReader': ['storage.objects.get'],
  'roles/storage.legacyObjectOwner': ['storage.objects.get'],
  'roles/storage.legacyBucketReader': ['storage.objects.list'],
  'roles/storage.legacyBucketWriter': [
    'storage.objects.list',
    'storage.objects.create',
    'storage.objects.delete',
  ],
  'roles/storage.legacyBucketOwner': [
    'storage.objects.list',
    'storage.objects.create',
    'storage.objects.delete',
  ],
};

/** `availableResource` of a Cloud Storage bucket: the only resource Credential Access Boundaries support. */
const BUCKET_RESOURCE =
  /^\/\/storage\.googleapis\.com\/projects\/_\/buckets\/([a-z0-9][a-z0-9._-]{1,221}[a-z0-9])$/;
const MAX_RULES = 10;
const MAX_EXPRESSION = 2048;

/** The Credential Access Boundary as STS receives it in `options`. */
export interface AccessBoundary {
  accessBoundaryRules: Array<{
    availableResource: string;
    availablePermissions: string[];
    availabilityCondition?: { expression: string; title?: string; description?: string };
  }>;
}

/** A validated rule, ready for the Storage stand-in to evaluate. */
interface CompiledRule {
  bucket: string;
  permissions: ReadonlySet<StoragePermission>;
  condition?: CelCondition;
}

/** A validated Credential Access Boundary: what STS records with the token it issues. */
export interface CompiledBoundary {
  /** The boundary as sent (for counters and tests). */
  readonly boundary: AccessBoundary;
  /** A canonical string of the boundary (keys sorted): the key of per-boundary counters. */
  readonly key: string;
  readonly rules: readonly CompiledRule[];
}

/** A boundary STS refuses, with the OAuth error it answers. */
export class BoundaryError extends Error {}

/** JSON with object keys sorted, so equal boundaries give equal strings. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function onlyFields(value: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(value))
    if (!allowed.includes(k))
      throw new BoundaryError(
        `Invalid JSON payload received. Unknown name "${k}" at '${where}': Cannot find field.`,
      );
}

/**
 * Validates a Credential Access Boundary as STS does before it issues a
 * downscoped token: 1 to 10 rules; each names a Cloud Storage bucket; each
 * permission is `inRole:` a Storage role; a condition's expression is at
 * most 2048 characters and parses (in the subset the Storage stand-in
 * evaluates).
 */
export function compileBoundary(value: unknown): CompiledBoundary {
  if (!isObject(value)) throw new BoundaryError('The access boundary must be a JSON object.');
  onlyFields(value, ['accessBoundaryRules'], 'access_boundary');
  const rules = value['accessBoundaryRules'];
  if (!Array.isArray(rules) || rules.length === 0)
    throw new BoundaryError('The access boundary must contain at least one access boundary rule.');
  if (rules.length > MAX_RULES)
    throw new BoundaryError(
      `The access boundary contains ${rules.length} rules; at most ${MAX_RULES} are allowed.`,
    );
  const compiled = rules.map((rule, i): CompiledRule => {
    const where = `access_boundary.access_boundary_rules[${i}]`;
    if (!isObject(rule)) throw new BoundaryError(`${where} must be a JSON object.`);
    onlyFields(rule, ['availableResource', 'availablePermissions', 'availabilityCondition'], where);
    const resource = rule['availableResource'];
    const bucket = typeof resource === 'string' ? BUCKET_RESOURCE.exec(resource)?.[1] : undefined;
    if (!bucket) {
      throw new BoundaryError(
        `${where}.available_resource must be a Cloud Storage bucket, //storage.googleapis.com/projects/_/buckets/BUCKET: ${String(resource)}`,
      );
    }
    const available = rule['availablePermissions'];
    if (!Array.isArray(available) || available.length === 0)
      throw new BoundaryError(`${where}.available_permissions must list at least one role.`);
    const permissions = new Set<StoragePermission>();
    for (const p of available) {
      const role = typeof p === 'string' && p.startsWith('inRole:') ? p.slice('inRole:'.length) : undefined;
      const granted = role === undefined ? undefined : STORAGE_ROLES[role];
      if (!granted) {
        throw new BoundaryError(
          `${where}.available_permissions: ${String(p)} is not inRole: a supported Cloud Storage role.`,
        );
      }
      for (const g of granted) permissions.add(g);
    }
    const condition = rule['availabilityCondition'];
    if (condition === undefined) return { bucket, permissions };
    if (!isObject(condition))
      throw new BoundaryError(`${where}.availability_condition must be a JSON object.`);
    onlyFields(condition, ['expression', 'title', 'description'], `${where}.availability_condition`);
    const expression = condition['expression'];
    if (typeof expression !== 'string' || expression.trim() === '')
      throw new BoundaryError(`${where}.availability_condition.expression is required.`);
    if (expression.length > MAX_EXPRESSION)
      throw new BoundaryError(
        `${where}.availability_condition.expression is longer than ${MAX_EXPRESSION} characters.`,
      );
    for (const f of ['title', 'description'])
      if (condition[f] !== undefined && typeof condition[f] !== 'string')
        throw new BoundaryError(`${where}.availability_condition.${f} must be a string.`);
    try {
      return { bucket, permissions, condition: parseCondition(expression) };
    } catch (err) {
      if (!(err instanceof CelParseError)) throw err;
      throw new BoundaryError(`${where}.availability_condition.expression: ${err.message}: ${expression}`);
    }
  });
  return { boundary: value as unknown as AccessBoundary, key: canonicalJson(value), rules: compiled };
}

/** Whether some rule of the boundary makes `permission` available on `bucket` for the resource (its condition holding). */
export function boundaryAllows(
  boundary: CompiledBoundary,
  bucket: string,
  permission: StoragePermission,
  resource: Parameters<CelCondition['evaluate']>[0],
): boolean {
  return boundary.rules.some(
    (r) =>
      r.bucket === bucket &&
      r.permissions.has(permission) &&
      (!r.condition || r.condition.evaluate(resource)),
  );
}
