/**
 * The part of CEL (Common Expression Language) that Credential Access
 * Boundary conditions use on Cloud Storage, parsed once (by STS, which
 * refuses what it cannot parse) and evaluated per request (by Storage):
 *
 * - `resource.name`, `resource.type`, `resource.service` (strings);
 * - `api.getAttribute('storage.googleapis.com/objectListPrefix', '')` (the
 *   `prefix` of an objects.list call, the default otherwise);
 * - string literals in single or double quotes (`\\`, `\'`, `\"`, `\n`, `\t` escapes);
 * - `s.startsWith(t)`, `s.endsWith(t)`, `s == t`, `s != t`;
 * - `&&`, `||`, `!`, parentheses, `true`, `false`.
 *
 * Anything else (other attributes, functions, numbers, raw strings) is a
 * parse error, as it would be a condition the Storage stand-in cannot
 * evaluate.
 */

/** The attributes a condition sees for one Storage request. */
export interface CelResource {
  /** `projects/_/buckets/B/objects/O` for object methods, `projects/_/buckets/B` for objects.list. */
  name: string;
  /** `storage.googleapis.com/Object` or `storage.googleapis.com/Bucket`. */
  type: string;
  /** Request attributes for `api.getAttribute(name, default)`. */
  apiAttributes?: Readonly<Record<string, string>>;
}

type StringNode =
  | { kind: 'literal'; value: string }
  | { kind: 'resource'; field: 'name' | 'type' | 'service' }
  | { kind: 'apiAttribute'; name: string; fallback: string };
type BoolNode =
  | { kind: 'bool'; value: boolean }
  | { kind: 'not'; operand: BoolNode }
  | { kind: 'and' | 'or'; left: BoolNode; right: BoolNode }
  | { kind: 'eq' | 'ne'; left: StringNode; right: StringNode }
  | { kind: 'startsWith' | 'endsWith'; target: StringNode; arg: StringNode };

/** A parsed condition. */
export interface CelCondition {
  readonly source: string;
  evaluate(resource: CelResource): boolean;
}

/** Why an expression was refused. */
export class CelParseError extends Error {}

type Token =
  | { t: 'str'; v: string; at: number }
  | { t: 'id'; v: string; at: number }
  | { t: 'op'; v: string; at: number }
  | { t: 'end'; at: number };

/** The one API attribute Storage sets: the `prefix` of an objects.list request. */
export const OBJECT_LIST_PREFIX = 'storage.googleapis.com/objectListPrefix';

const OPERATORS = ['&&', '||', '==', '!=', '!', '(', ')', '.', ','];

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      const start = i++;
      let value = '';
      for (;;) {
        if (i >= source.length) throw new CelParseError(`unterminated string literal at ${start}`);
        const d = source[i++]!;
        if (d === c) break;
        if (d === '\n') throw new CelParseError(`newline in string literal at ${start}`);
        if (d !== '\\') {
          value += d;
          continue;
        }
        const e = source[i++];
        const escapes: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', n: '\n', t: '\t' };
        if (e === undefined || !(e in escapes)) throw new CelParseError(`unsupported escape at ${i - 2}`);
        value += escapes[e];
      }
      tokens.push({ t: 'str', v: value, at: start });
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(source.slice(i))![0];
      tokens.push({ t: 'id', v: m, at: i });
      i += m.length;
      continue;
    }
    const op = OPERATORS.find((o) => source.startsWith(o, i));
    if (!op) throw new CelParseError(`unexpected character '${c}' at ${i}`);
    tokens.push({ t: 'op', v: op, at: i });
    i += op.length;
  }
  tokens.push({ t: 'end', at: source.length });
  return tokens;
}

/** Parses `source`; throws {@link CelParseError} for anything outside the subset. */
export function parseCondition(source: string): CelCondition {
  const tokens = tokenize(source);
  let pos = 0;
  const peek = () => tokens[pos]!;
  const isOp = (v: string) => {
    const t = peek();
    return t.t === 'op' && t.v === v;
  };
  const expectOp = (v: string) => {
    if (!isOp(v)) throw new CelParseError(`expected '${v}' at ${peek().at}`);
    pos++;
  };
  const ident = () => {
    const t = peek();
    if (t.t !== 'id') throw new CelParseError(`expected an identifier at ${t.at}`);
    pos++;
    return t.v;
  };

  function orExpr(): BoolNode {
    let left = andExpr();
    while (isOp('||')) {
      pos++;
      left = { kind: 'or', left, right: andExpr() };
    }
    return left;
  }
  function andExpr(): BoolNode {
    let left = unary();
    while (isOp('&&')) {
      pos++;
      left = { kind: 'and', left, right: unary() };
    }
    return left;
  }
  function unary(): BoolNode {
    if (isOp('!')) {
      pos++;
      return { kind: 'not', operand: unary() };
    }
    return comparison();
  }
  function comparison(): BoolNode {
    const t = peek();
    if (t.t === 'op' && t.v === '(') {
      pos++;
      const inner = orExpr();
      expectOp(')');
      return inner;
    }
    if (t.t === 'id' && (t.v === 'true' || t.v === 'false')) {
      pos++;
      return { kind: 'bool', value: t.v === 'true' };
    }
    const left = stringTerm();
    if (isOp('.')) {
      pos++;
      const at = peek().at;
      const method = ident();
      if (method !== 'startsWith' && method !== 'endsWith')
        throw new CelParseError(`unsupported function '${method}' at ${at}`);
      expectOp('(');
      const arg = stringTerm();
      expectOp(')');
      return { kind: method, target: left, arg };
    }
    if (isOp('==') || isOp('!=')) {
      const kind = (peek() as { v: string }).v === '==' ? 'eq' : 'ne';
      pos++;
      return { kind, left, right: stringTerm() };
    }
    throw new CelParseError(`expected a boolean expression at ${peek().at}`);
  }
  function stringTerm(): StringNode {
    const t = peek();
    if (t.t === 'str') {
      pos++;
      return { kind: 'literal', value: t.v };
    }
    if (t.t !== 'id') throw new CelParseError(`expected a string at ${t.at}`);
    if (t.v === 'resource') {
      pos++;
      expectOp('.');
      const at = peek().at;
      const field = ident();
      if (field !== 'name' && field !== 'type' && field !== 'service')
        throw new CelParseError(`unknown attribute 'resource.${field}' at ${at}`);
      return { kind: 'resource', field };
    }
    if (t.v === 'api') {
      pos++;
      expectOp('.');
      const at = peek().at;
      if (ident() !== 'getAttribute') throw new CelParseError(`unsupported function at ${at}`);
      expectOp('(');
      const name = peek();
      if (name.t !== 'str') throw new CelParseError(`expected an attribute name at ${name.at}`);
      if (name.v !== OBJECT_LIST_PREFIX)
        throw new CelParseError(`unknown API attribute '${name.v}' at ${name.at}`);
      pos++;
      expectOp(',');
      const fallback = peek();
      if (fallback.t !== 'str') throw new CelParseError(`expected a default value at ${fallback.at}`);
      pos++;
      expectOp(')');
      return { kind: 'apiAttribute', name: name.v, fallback: fallback.v };
    }
    throw new CelParseError(`unknown identifier '${t.v}' at ${t.at}`);
  }

  const root = orExpr();
  if (peek().t !== 'end') throw new CelParseError(`unexpected input at ${peek().at}`);
  return { source, evaluate: (resource) => evalBool(root, resource) };
}

function evalString(node: StringNode, r: CelResource): string {
  switch (node.kind) {
    case 'literal':
      return node.value;
    case 'resource':
      return node.field === 'service' ? 'storage.googleapis.com' : r[node.field];
    case 'apiAttribute':
      return r.apiAttributes?.[node.name] ?? node.fallback;
  }
}

function evalBool(node: BoolNode, r: CelResource): boolean {
  switch (node.kind) {
    case 'bool':
      return node.value;
    case 'not':
      return !evalBool(node.operand, r);
    case 'and':
      return evalBool(node.left, r) && evalBool(node.right, r);
    case 'or':
      return evalBool(node.left, r) || evalBool(node.right, r);
    case 'eq':
      return evalString(node.left, r) === evalString(node.right, r);
    case 'ne':
      return evalString(node.left, r) !== evalString(node.right, r);
    case 'startsWith':
      return evalString(node.target, r).startsWith(evalString(node.arg, r));
    case 'endsWith':
      return evalString(node.target, r).endsWith(evalString(node.arg, r));
  }
}
