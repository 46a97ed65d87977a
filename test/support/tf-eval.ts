/**
 * Evaluates Terraform expressions (tf-syntax.ts) with known variables, as
 * `terraform plan` would before any resource exists: variable validations,
 * every local, the `count`/`for_each` of resources and, in planModule, every
 * argument of every instance, dynamic blocks, preconditions, check blocks,
 * provider blocks and outputs. Like Terraform it is eager: a local that
 * fails fails the plan even when nothing reads it. Values that only exist
 * after apply (resource attributes) are UNKNOWN. Only the functions this
 * module's configuration uses are implemented; any other throws.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { attr, type Body, type Expr, parseExpression, type Step, type TfModule } from './tf-syntax.js';

/** A value not known until apply. */
export const UNKNOWN: unique symbol = Symbol('unknown');

type Scope = Record<string, unknown>;

/** An evaluation failure, as Terraform would report it (e.g. an invalid function argument). */
export class TfEvalError extends Error {}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function truthy(v: unknown): boolean {
  if (v === UNKNOWN) throw new TfEvalError('a condition depends on a value known only after apply');
  if (typeof v !== 'boolean') throw new TfEvalError(`expected a bool, got ${JSON.stringify(v)}`);
  return v;
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** HCL's string conversion of a primitive. */
function str(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new TfEvalError(`cannot use ${v === null ? 'null' : typeof v} as a string`);
}

function list(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (v instanceof Set) return [...v];
  throw new TfEvalError(`expected a list, got ${JSON.stringify(v)}`);
}

/** Go RE2 and JavaScript agree on the patterns this module uses; `regex` returns the match. */
function regex(pattern: string, s: string): unknown {
  const m = new RegExp(pattern).exec(s);
  if (!m) throw new TfEvalError(`pattern ${pattern} does not match`);
  if (m.length === 1) return m[0];
  return m.slice(1);
}

/**
 * Terraform's jsonencode: object keys sorted (cty orders attributes and map
 * keys), and Go's encoder escapes <, >, & and U+2028/U+2029. Byte counts of
 * the policy depend on it, so it must match to the byte.
 */
function jsonencode(v: unknown): string {
  const sorted = (x: unknown): unknown =>
    Array.isArray(x)
      ? x.map(sorted)
      : isObj(x)
        ? Object.fromEntries(
            Object.keys(x)
              .sort()
              .map((k) => [k, sorted(x[k])]),
          )
        : x;
  return JSON.stringify(sorted(v)).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

const FUNCTIONS: Record<string, (...args: unknown[]) => unknown> = {
  length: (v) => (typeof v === 'string' ? v.length : isObj(v) ? Object.keys(v).length : list(v).length),
  contains: (l, v) => list(l).some((x) => equal(x, v)),
  alltrue: (l) => list(l).every(truthy),
  anytrue: (l) => list(l).some(truthy),
  startswith: (s, p) => str(s).startsWith(str(p)),
  endswith: (s, p) => str(s).endsWith(str(p)),
  regex: (p, s) => regex(str(p), str(s)),
  lower: (s) => str(s).toLowerCase(),
  join: (sep, l) => list(l).map(str).join(str(sep)),
  split: (sep, s) => str(s).split(str(sep)),
  toset: (l) => [...new Map(list(l).map((x) => [JSON.stringify(x), x])).values()],
  tolist: (l) => list(l),
  distinct: (l) => [...new Map(list(l).map((x) => [JSON.stringify(x), x])).values()],
  concat: (...ls) => ls.flatMap(list),
  flatten: (l) => list(l).flat(Number.POSITIVE_INFINITY),
  keys: (o) => (isObj(o) ? Object.keys(o).sort() : list(o)),
  values: (o) =>
    isObj(o)
      ? Object.keys(o)
          .sort()
          .map((k) => o[k])
      : list(o),
  merge: (...os) => Object.assign({}, ...os.filter((o) => o !== null)),
  one: (l) => {
    const xs = list(l);
    if (xs.length > 1) throw new TfEvalError('one() of more than one element');
    return xs[0] ?? null;
  },
  coalesce: (...vs) => {
    const v = vs.find((x) => x !== null && x !== '');
    if (v === undefined) throw new TfEvalError('coalesce: no non-null argument');
    return v;
  },
  setproduct: (...ls) =>
    ls.map(list).reduce<unknown[][]>((acc, l) => acc.flatMap((a) => l.map((x) => [...a, x])), [[]]),
  substr: (s, off, len) => {
    const l = Number(len);
    return str(s).substr(Number(off), l < 0 ? undefined : l);
  },
  base64encode: (s) => Buffer.from(str(s)).toString('base64'),
  floor: (n) => Math.floor(Number(n)),
  nonsensitive: (v) => v,
  sensitive: (v) => v,
  tostring: (v) => (v === null ? null : str(v)),
  tonumber: (v) => Number(v),
  jsonencode: (v) => jsonencode(v),
  sum: (l) => {
    const xs = list(l);
    if (xs.length === 0) throw new TfEvalError('sum: the list is empty');
    return xs.reduce((a: number, x) => a + Number(x), 0);
  },
  regexall: (p, s) =>
    [...str(s).matchAll(new RegExp(str(p), 'g'))].map((m) => (m.length === 1 ? m[0] : m.slice(1))),
  sha256: (s) => createHash('sha256').update(str(s)).digest('hex'),
  file: (p) => {
    if (!existsSync(str(p))) throw new TfEvalError(`file: no file at ${str(p)}`);
    return readFileSync(str(p), 'utf8');
  },
  fileexists: (p) => existsSync(str(p)) && statSync(str(p)).isFile(),
  strcontains: (s, sub) => str(s).includes(str(sub)),
  sort: (l) => list(l).map(str).sort(),
  max: (...ns) => Math.max(...ns.map(Number)),
  min: (...ns) => Math.min(...ns.map(Number)),
  lookup: (o, k, d) => (isObj(o) && Object.hasOwn(o, str(k)) ? o[str(k)] : d),
  format: (f, ...args) => {
    let i = 0;
    return str(f).replace(/%[sd]/g, () => str(args[i++]));
  },
  can: () => {
    throw new TfEvalError('can() is evaluated lazily');
  },
  try: () => {
    throw new TfEvalError('try() is evaluated lazily');
  },
};

/** Functions whose result is known when their arguments' structure is, whatever values it holds. */
const STRUCTURAL = new Set([
  'merge',
  'concat',
  'flatten',
  'tolist',
  'length',
  'keys',
  'values',
  'lookup',
  'one',
]);

/** Whether a value is, or holds, an unknown value. */
export function hasUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  if (isObj(v)) return Object.values(v).some(hasUnknown);
  return false;
}

function step(obj: unknown, s: Step, scope: Scope): unknown {
  if (obj === UNKNOWN) return UNKNOWN;
  if (s.k === 'attr') {
    if (!isObj(obj)) throw new TfEvalError(`cannot read .${s.name} of ${JSON.stringify(obj)}`);
    if (!Object.hasOwn(obj, s.name)) throw new TfEvalError(`no attribute ${s.name}`);
    return obj[s.name];
  }
  const key = evaluate(s.key, scope);
  if (key === UNKNOWN) return UNKNOWN;
  if (Array.isArray(obj)) {
    const v = obj[Number(key)];
    if (v === undefined) throw new TfEvalError(`index ${String(key)} out of range`);
    return v;
  }
  if (isObj(obj) && Object.hasOwn(obj, str(key))) return obj[str(key)];
  throw new TfEvalError(`no element ${JSON.stringify(key)}`);
}

/** Evaluates an expression in a scope of root names (`var`, `local`, `each`, resource types...). */
export function evaluate(e: Expr, scope: Scope): unknown {
  switch (e.k) {
    case 'lit':
      return e.v;
    case 'tmpl': {
      const parts = e.parts.map((p) => (typeof p === 'string' ? p : evaluate(p, scope)));
      if (parts.includes(UNKNOWN)) return UNKNOWN;
      if (parts.length === 1) return parts[0];
      return parts.map(str).join('');
    }
    case 'name':
      if (!Object.hasOwn(scope, e.name)) throw new TfEvalError(`unknown name ${e.name}`);
      return scope[e.name];
    case 'attr':
      return step(evaluate(e.obj, scope), { k: 'attr', name: e.name }, scope);
    case 'index':
      return step(evaluate(e.obj, scope), { k: 'index', key: e.key }, scope);
    case 'splat': {
      const obj = evaluate(e.obj, scope);
      if (obj === UNKNOWN) return UNKNOWN;
      const items = obj === null ? [] : Array.isArray(obj) ? obj : [obj];
      return items.map((x) => e.steps.reduce((v, s) => step(v, s, scope), x));
    }
    case 'call': {
      if (e.fn === 'can' || e.fn === 'try') {
        for (const a of e.args) {
          try {
            const v = evaluate(a, scope);
            if (e.fn === 'can') return true;
            return v;
          } catch (err) {
            if (!(err instanceof TfEvalError)) throw err;
          }
          if (e.fn === 'can') return false;
        }
        throw new TfEvalError('try: every argument failed');
      }
      const fn = FUNCTIONS[e.fn];
      if (!fn) throw new Error(`function ${e.fn} is not implemented by this evaluator`);
      const args = e.args.map((a) => evaluate(a, scope));
      if (e.fn === 'nonsensitive' || e.fn === 'sensitive') return args[0];
      // An unknown argument makes the result unknown; so does an unknown inside one, except for the
      // functions that only move values around (whose results then hold the unknown values).
      if (args.includes(UNKNOWN)) return UNKNOWN;
      if (!STRUCTURAL.has(e.fn) && args.some(hasUnknown)) return UNKNOWN;
      return fn(...args);
    }
    case 'tuple':
      return e.items.map((x) => evaluate(x, scope));
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [k, v] of e.items) {
        const key = k.k === 'name' ? k.name : evaluate(k, scope);
        out[str(key)] = evaluate(v, scope);
      }
      return out;
    }
    case 'for': {
      const coll = evaluate(e.coll, scope);
      if (coll === UNKNOWN) return UNKNOWN;
      const entries: [unknown, unknown][] = isObj(coll)
        ? Object.keys(coll)
            .sort()
            .map((k) => [k, coll[k]])
        : list(coll).map((v, i) => [i, v]);
      const outList: unknown[] = [];
      const outObj: Record<string, unknown> = {};
      for (const [k, v] of entries) {
        const inner: Scope = { ...scope, [e.value]: v, ...(e.key ? { [e.key]: k } : {}) };
        if (e.cond && !truthy(evaluate(e.cond, inner))) continue;
        const value = evaluate(e.out, inner);
        if (!e.object) outList.push(value);
        else {
          const key = str(evaluate(e.outKey!, inner));
          if (e.group) outObj[key] = [...((outObj[key] as unknown[] | undefined) ?? []), value];
          else if (Object.hasOwn(outObj, key))
            throw new TfEvalError(`duplicate key ${key} in a for expression`);
          else outObj[key] = value;
        }
      }
      return e.object ? outObj : outList;
    }
    case 'cond': {
      // As HCL: an unknown condition makes the result unknown (and drops both branches' errors).
      const c = evaluate(e.c, scope);
      if (c === UNKNOWN) return UNKNOWN;
      return truthy(c) ? evaluate(e.a, scope) : evaluate(e.b, scope);
    }
    case 'un': {
      const v = evaluate(e.e, scope);
      if (v === UNKNOWN) return UNKNOWN;
      return e.op === '!' ? !truthy(v) : -Number(v);
    }
    case 'bin': {
      if (e.op === '&&' || e.op === '||') {
        const lv = evaluate(e.l, scope);
        if (lv === UNKNOWN) return UNKNOWN;
        const l = truthy(lv);
        if (e.op === '&&' ? !l : l) return l;
        const rv = evaluate(e.r, scope);
        return rv === UNKNOWN ? UNKNOWN : truthy(rv);
      }
      const l = evaluate(e.l, scope);
      const r = evaluate(e.r, scope);
      if (l === UNKNOWN || r === UNKNOWN) return UNKNOWN;
      switch (e.op) {
        case '==':
          return equal(l, r);
        case '!=':
          return !equal(l, r);
        case '<':
          return Number(l) < Number(r);
        case '>':
          return Number(l) > Number(r);
        case '<=':
          return Number(l) <= Number(r);
        case '>=':
          return Number(l) >= Number(r);
        case '+':
          return Number(l) + Number(r);
        case '-':
          return Number(l) - Number(r);
        case '*':
          return Number(l) * Number(r);
        case '/':
          return Number(l) / Number(r);
        case '%':
          return Number(l) % Number(r);
      }
      throw new TfEvalError(`operator ${e.op}`);
    }
  }
}

/** A variable's value as Terraform sets it: the given value or the default, with optional() defaults applied. */
function withDefaults(type: Expr | undefined, value: unknown): unknown {
  if (!type || value === null || value === undefined) return value ?? null;
  if (type.k === 'call' && (type.fn === 'list' || type.fn === 'set') && Array.isArray(value))
    return value.map((v) => withDefaults(type.args[0], v));
  if (type.k === 'call' && type.fn === 'map' && isObj(value))
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withDefaults(type.args[0], v)]));
  if (type.k === 'call' && type.fn === 'object' && isObj(value) && type.args[0]?.k === 'object') {
    const out: Record<string, unknown> = { ...value };
    for (const [k, t] of type.args[0].items) {
      const key = k.k === 'lit' ? String(k.v) : k.k === 'name' ? k.name : '';
      if (t.k === 'call' && t.fn === 'optional') {
        out[key] = Object.hasOwn(out, key)
          ? withDefaults(t.args[0], out[key])
          : t.args[1]
            ? evaluate(t.args[1], {})
            : null;
      } else {
        if (!Object.hasOwn(out, key)) throw new TfEvalError(`attribute ${key} is required`);
        out[key] = withDefaults(t, out[key]);
      }
    }
    return out;
  }
  return value;
}

/** The variables of a module set from `given` (what a tfvars file says) with defaults; throws for a missing required one. */
export function variableValues(m: TfModule, given: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, body] of m.variables) {
    const def = attr(body, 'default');
    if (Object.hasOwn(given, name)) out[name] = withDefaults(attr(body, 'type'), given[name]);
    else if (def) out[name] = withDefaults(attr(body, 'type'), evaluate(def, {}));
    else throw new TfEvalError(`variable ${name} is required`);
  }
  for (const name of Object.keys(given))
    if (!m.variables.has(name)) throw new TfEvalError(`variable ${name} is not declared`);
  return out;
}

/** The failing validations of every variable, as Terraform reports them: "variable: error_message". */
export function failedValidations(m: TfModule, vars: Record<string, unknown>): string[] {
  const failures: string[] = [];
  for (const [name, body] of m.variables) {
    for (const v of body.blocks.filter((b) => b.type === 'validation')) {
      const condition = attr(v.body, 'condition')!;
      let ok: boolean;
      try {
        ok = truthy(evaluate(condition, { var: vars }));
      } catch (err) {
        if (!(err instanceof TfEvalError)) throw err;
        ok = false; // Terraform reports an error evaluating the condition as a failure too
      }
      if (!ok) failures.push(`${name}: ${String(evaluate(attr(v.body, 'error_message')!, { var: vars }))}`);
    }
  }
  return failures;
}

/**
 * The root scope of a module before apply: variables, unknown resources (or
 * the `known` values a test gives for some), and every local, evaluated
 * eagerly as Terraform does: a local that fails throws here, read or not.
 */
export function planScope(
  m: TfModule,
  vars: Record<string, unknown>,
  known: Record<string, Record<string, unknown>> = {},
): Scope {
  const local: Record<string, unknown> = {};
  const scope: Scope = {
    var: vars,
    local,
    path: { module: m.dir || '.', root: m.dir || '.', cwd: process.cwd() },
    terraform: { workspace: 'default' },
  };
  // A resource's value before apply: its instances are known (count and for_each must be), their attributes not.
  const instances = (address: string) => (): unknown => {
    const block = m.resources.get(address) ?? m.data.get(address) ?? m.ephemeral.get(address);
    const keys = instanceKeys(m, address, scope);
    if (attr(block!.body, 'for_each')) return Object.fromEntries(keys.map((k) => [k, UNKNOWN]));
    if (attr(block!.body, 'count')) return keys.map(() => UNKNOWN);
    return UNKNOWN;
  };
  const define = (root: Record<string, unknown>, addresses: Iterable<string>) => {
    for (const address of addresses) {
      const [type, name] = address.split('.') as [string, string];
      root[type] ??= {};
      Object.defineProperty(root[type], name, {
        enumerable: true,
        configurable: true,
        get: instances(address),
      });
    }
  };
  const data: Record<string, unknown> = {};
  const ephemeral: Record<string, unknown> = {};
  define(scope, m.resources.keys());
  define(data, m.data.keys());
  define(ephemeral, m.ephemeral.keys());
  scope['data'] = data;
  scope['ephemeral'] = ephemeral;
  for (const [type, byName] of Object.entries(known)) {
    scope[type] ??= {};
    const root = scope[type] as Record<string, unknown>;
    for (const [name, value] of Object.entries(byName))
      Object.defineProperty(root, name, { enumerable: true, configurable: true, value });
  }
  // Each local is computed once, on first read (in dependency order), then kept.
  const busy = new Set<string>();
  for (const [name, expr] of m.locals) {
    Object.defineProperty(local, name, {
      enumerable: true,
      configurable: true,
      get: () => {
        if (busy.has(name)) throw new TfEvalError(`local.${name} depends on itself`);
        busy.add(name);
        try {
          const value = evaluate(expr, scope);
          Object.defineProperty(local, name, { enumerable: true, value });
          return value;
        } catch (err) {
          if (err instanceof TfEvalError && !err.message.startsWith('local.'))
            throw new TfEvalError(`local.${name}: ${err.message}`);
          throw err;
        } finally {
          busy.delete(name);
        }
      },
    });
  }
  // Terraform evaluates every local in the plan, whether anything reads it or not.
  for (const name of m.locals.keys()) void local[name];
  return scope;
}

/**
 * The instance keys a resource would have in a plan: [] for count = 0 or an
 * empty for_each, ['0'..] for count, the keys for for_each, [''] for neither.
 */
export function instanceKeys(m: TfModule, address: string, scope: Scope): string[] {
  const block = m.resources.get(address) ?? m.data.get(address) ?? m.ephemeral.get(address);
  if (!block) throw new Error(`no ${address}`);
  const count = attr(block.body, 'count');
  const forEach = attr(block.body, 'for_each');
  if (count) {
    const n = evaluate(count, scope);
    if (n === UNKNOWN) throw new TfEvalError(`${address}: count is unknown until apply`);
    return Array.from({ length: Number(n) }, (_, i) => String(i));
  }
  if (forEach) {
    const v = evaluate(forEach, scope);
    if (v === UNKNOWN) throw new TfEvalError(`${address}: for_each is unknown until apply`);
    if (Array.isArray(v)) return v.map(str);
    if (isObj(v)) return Object.keys(v);
    throw new TfEvalError(`${address}: for_each must be a map or a set`);
  }
  return [''];
}

/**
 * An attribute of one instance of a resource, evaluated with `each`/`count`
 * bound (unknown resource attributes stay UNKNOWN).
 */
export function instanceAttribute(
  m: TfModule,
  address: string,
  key: string,
  name: string,
  scope: Scope,
): unknown {
  const block = m.resources.get(address) ?? m.data.get(address);
  if (!block) throw new Error(`no ${address}`);
  const forEach = attr(block.body, 'for_each');
  const inner: Scope = { ...scope };
  if (forEach) {
    const coll = evaluate(forEach, scope);
    const value = isObj(coll) ? coll[key] : key;
    inner['each'] = { key, value };
  } else if (attr(block.body, 'count')) inner['count'] = { index: Number(key) };
  let body: Body = block.body;
  const parts = name.split('.');
  for (const p of parts.slice(0, -1)) body = body.blocks.find((b) => b.type === p)!.body;
  const e = attr(body, parts.at(-1)!);
  return e === undefined ? undefined : evaluate(e, inner);
}

/** What `terraform plan` computes for one module: every instance's arguments, and what failed. */
export interface Plan {
  scope: Scope;
  /** address ("type.name", "data.type.name", "ephemeral.type.name") => instance key => its arguments and blocks. */
  instances: Map<string, Map<string, Record<string, unknown>>>;
  providers: Map<string, Record<string, unknown>>;
  outputs: Map<string, unknown>;
  /** Failed lifecycle preconditions, "address[key]: error_message": each fails a real plan. */
  preconditions: string[];
  /** Failed check assertions, "check.name: error_message": warnings in a real plan. */
  checks: string[];
}

const META_ATTRS = new Set(['count', 'for_each', 'depends_on', 'provider']);
const META_BLOCKS = new Set(['lifecycle', 'provisioner', 'connection']);

/** A body's value: its arguments, and each nested block type as a list of block values (dynamic blocks expanded). */
function bodyValue(body: Body, scope: Scope, where: string, meta: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of body.attrs) {
    if (meta && META_ATTRS.has(a.name)) continue;
    out[a.name] = located(`${where}.${a.name} (line ${a.line})`, () => evaluate(a.expr, scope));
  }
  for (const b of body.blocks) {
    if (meta && META_BLOCKS.has(b.type)) continue;
    if (b.type === 'dynamic') {
      const name = b.labels[0]!;
      const iterator = attr(b.body, 'iterator');
      const it = iterator?.k === 'name' ? iterator.name : name;
      const content = b.body.blocks.find((c) => c.type === 'content')!;
      const each = located(`${where}.dynamic.${name}.for_each (line ${b.line})`, () =>
        evaluate(attr(b.body, 'for_each')!, scope),
      );
      if (each === UNKNOWN) {
        out[name] = UNKNOWN;
        continue;
      }
      const entries: [unknown, unknown][] = isObj(each)
        ? Object.keys(each).map((k) => [k, each[k]])
        : list(each).map((v, i) => [i, v]);
      const made = entries.map(([key, value]) =>
        bodyValue(content.body, { ...scope, [it]: { key, value } }, `${where}.${name}`, false),
      );
      out[name] = [...((out[name] as unknown[] | undefined) ?? []), ...made];
    } else {
      const value = bodyValue(b.body, scope, `${where}.${b.type}`, false);
      out[b.type] = [...((out[b.type] as unknown[] | undefined) ?? []), value];
    }
  }
  return out;
}

/** Runs `f`, naming `where` in the message of an evaluation error, as Terraform names the argument. */
function located<T>(where: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof TfEvalError) throw new TfEvalError(`${where}: ${err.message}`);
    throw err;
  }
}

/**
 * The plan of a module: what `terraform plan` evaluates, eagerly, before any
 * resource exists. Throws a TfEvalError (naming the local, the instance and
 * the argument) where Terraform's plan would stop with an error; failed
 * preconditions and checks are returned.
 */
export function planModule(
  m: TfModule,
  vars: Record<string, unknown>,
  known: Record<string, Record<string, unknown>> = {},
): Plan {
  const scope = planScope(m, vars, known);
  const plan: Plan = {
    scope,
    instances: new Map(),
    providers: new Map(),
    outputs: new Map(),
    preconditions: [],
    checks: [],
  };
  const kinds = [
    ['', m.resources],
    ['data.', m.data],
    ['ephemeral.', m.ephemeral],
  ] as const;
  for (const [prefix, blocks] of kinds)
    for (const [address, block] of blocks) {
      const byKey = new Map<string, Record<string, unknown>>();
      const keys = located(`${prefix}${address}`, () => instanceKeys(m, address, scope));
      const forEach = attr(block.body, 'for_each');
      const coll = forEach ? evaluate(forEach, scope) : undefined;
      for (const key of keys) {
        const inner: Scope = { ...scope };
        if (forEach) inner['each'] = { key, value: isObj(coll) ? coll[key] : key };
        else if (attr(block.body, 'count')) inner['count'] = { index: Number(key) };
        const where = `${prefix}${address}${key === '' ? '' : `[${JSON.stringify(key)}]`}`;
        byKey.set(key, bodyValue(block.body, inner, where, true));
        for (const lc of block.body.blocks.filter((b) => b.type === 'lifecycle'))
          for (const pre of lc.body.blocks.filter((b) => b.type === 'precondition')) {
            const ok = located(`${where}.precondition (line ${pre.line})`, () =>
              evaluate(attr(pre.body, 'condition')!, inner),
            );
            if (ok === UNKNOWN) continue; // Terraform checks it during apply
            if (!truthy(ok))
              plan.preconditions.push(`${where}: ${str(evaluate(attr(pre.body, 'error_message')!, inner))}`);
          }
      }
      plan.instances.set(`${prefix}${address}`, byKey);
    }
  for (const [name, block] of m.providers)
    plan.providers.set(name, bodyValue(block.body, scope, `provider.${name}`, false));
  for (const b of m.blocks) {
    if (b.type === 'output')
      plan.outputs.set(
        b.labels[0]!,
        located(`output.${b.labels[0]}`, () => evaluate(attr(b.body, 'value')!, scope)),
      );
    if (b.type === 'check')
      for (const a of b.body.blocks.filter((x) => x.type === 'assert')) {
        const ok = located(`check.${b.labels[0]}`, () => evaluate(attr(a.body, 'condition')!, scope));
        if (ok !== UNKNOWN && !truthy(ok))
          plan.checks.push(`check.${b.labels[0]}: ${str(evaluate(attr(a.body, 'error_message')!, scope))}`);
      }
  }
  return plan;
}

/** Parses a tfvars file (attributes only) into values. */
export function tfvars(
  text: string,
  file: string,
  parse: (t: string, f: string) => Body,
): Record<string, unknown> {
  const body = parse(text, file);
  return Object.fromEntries(body.attrs.map((a) => [a.name, evaluate(a.expr, {})]));
}

/** Evaluates expression text in a scope (for tests). */
export function evaluateText(text: string, scope: Scope): unknown {
  return evaluate(parseExpression(text), scope);
}
