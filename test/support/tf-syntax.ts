/**
 * A parser for the subset of HCL native syntax that Terraform configurations
 * use: bodies of attributes and blocks, and expressions (templates, traversals,
 * splats, calls, tuples, objects, for expressions, conditionals, operators).
 * hcl2json cannot tell `x = [{...}]` from a block `x {...}`; the schema check
 * needs to, so it reads the source with this parser.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** An expression. Traversals are `name` roots followed by `attr`/`index`/`splat` steps. */
export type Expr =
  | { k: 'lit'; v: unknown }
  | { k: 'tmpl'; parts: (string | Expr)[] }
  | { k: 'name'; name: string }
  | { k: 'attr'; obj: Expr; name: string }
  | { k: 'index'; obj: Expr; key: Expr }
  | { k: 'splat'; obj: Expr; steps: Step[] }
  | { k: 'call'; fn: string; args: Expr[] }
  | { k: 'tuple'; items: Expr[] }
  | { k: 'object'; items: [Expr, Expr][] }
  | {
      k: 'for';
      object: boolean;
      key: string | undefined;
      value: string;
      coll: Expr;
      out: Expr;
      outKey: Expr | undefined;
      cond: Expr | undefined;
      group: boolean;
    }
  | { k: 'cond'; c: Expr; a: Expr; b: Expr }
  | { k: 'bin'; op: string; l: Expr; r: Expr }
  | { k: 'un'; op: string; e: Expr };

export type Step = { k: 'attr'; name: string } | { k: 'index'; key: Expr };

export interface Attr {
  name: string;
  expr: Expr;
  line: number;
}
export interface Block {
  type: string;
  labels: string[];
  body: Body;
  line: number;
}
export interface Body {
  attrs: Attr[];
  blocks: Block[];
}

interface Token {
  t: 'id' | 'num' | 'str' | 'heredoc' | 'punct' | 'nl' | 'eof';
  v: string;
  line: number;
}

/** A syntax error, with the file and line. */
export class HclSyntaxError extends Error {}

const PUNCT = ['==', '!=', '<=', '>=', '&&', '||', '=>', '...', '{', '}', '[', ']', '(', ')'];
const SINGLE = '=+-*/%<>!?:.,';

/** Finds the end of a template interpolation `${...}` that starts after `${` at `i`; returns the index of its `}`. */
function skipInterpolation(src: string, i: number, file: string, line: number): number {
  let depth = 0;
  for (; i < src.length; i++) {
    const c = src[i];
    if (c === '"') i = skipString(src, i + 1, file, line);
    else if (c === '{') depth++;
    else if (c === '}') {
      if (depth === 0) return i;
      depth--;
    }
  }
  throw new HclSyntaxError(`${file}:${line}: unterminated interpolation`);
}

/** Finds the closing quote of a string whose body starts at `i`. */
function skipString(src: string, i: number, file: string, line: number): number {
  for (; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') i++;
    else if (c === '"') return i;
    else if ((c === '$' || c === '%') && src[i + 1] === '{') {
      if (src[i - 1] === c) continue; // $${ is a literal
      i = skipInterpolation(src, i + 2, file, line);
    } else if (c === '\n') throw new HclSyntaxError(`${file}:${line}: newline in a quoted string`);
  }
  throw new HclSyntaxError(`${file}:${line}: unterminated string`);
}

function tokenize(src: string, file: string, firstLine = 1): Token[] {
  const out: Token[] = [];
  let line = firstLine;
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '\n') {
      out.push({ t: 'nl', v: '\n', line });
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') i++;
    else if (c === '#' || (c === '/' && src[i + 1] === '/')) {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw new HclSyntaxError(`${file}:${line}: unterminated comment`);
      line += src.slice(i, end).split('\n').length - 1;
      i = end + 2;
    } else if (c === '"') {
      const end = skipString(src, i + 1, file, line);
      out.push({ t: 'str', v: src.slice(i + 1, end), line });
      i = end + 1;
    } else if (c === '<' && src[i + 1] === '<' && /[-A-Za-z]/.test(src[i + 2] ?? '')) {
      const m = /^<<(-?)([A-Za-z_][\w-]*)\r?\n/.exec(src.slice(i));
      if (!m) throw new HclSyntaxError(`${file}:${line}: bad heredoc`);
      const start = i + m[0].length;
      const close = new RegExp(`^[ \\t]*${m[2]}[ \\t]*$`, 'm');
      const rest = src.slice(start);
      const found = close.exec(rest);
      if (!found) throw new HclSyntaxError(`${file}:${line}: unterminated heredoc ${m[2]}`);
      let text = rest.slice(0, found.index);
      if (m[1] === '-') {
        const lines = text.split('\n');
        const indent = Math.min(
          ...lines.filter((l) => l.trim() !== '').map((l) => /^[ \t]*/.exec(l)![0].length),
        );
        text = lines.map((l) => l.slice(indent)).join('\n');
      }
      out.push({ t: 'heredoc', v: text, line });
      line += rest.slice(0, found.index + found[0].length).split('\n').length - 1;
      i = start + found.index + found[0].length;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(src.slice(i))!;
      out.push({ t: 'num', v: m[0], line });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][\w-]*/.exec(src.slice(i))!;
      out.push({ t: 'id', v: m[0], line });
      i += m[0].length;
    } else {
      const p = PUNCT.find((p) => src.startsWith(p, i));
      if (p) {
        out.push({ t: 'punct', v: p, line });
        i += p.length;
      } else if (SINGLE.includes(c)) {
        out.push({ t: 'punct', v: c, line });
        i++;
      } else throw new HclSyntaxError(`${file}:${line}: unexpected character ${JSON.stringify(c)}`);
    }
  }
  out.push({ t: 'eof', v: '', line });
  return out;
}

const BINARY: Record<string, number> = {
  '||': 1,
  '&&': 2,
  '==': 3,
  '!=': 3,
  '<': 4,
  '>': 4,
  '<=': 4,
  '>=': 4,
  '+': 5,
  '-': 5,
  '*': 6,
  '/': 6,
  '%': 6,
};

class Parser {
  private i = 0;
  /** >0 inside brackets, where newlines do not end an expression. */
  private nest = 0;
  constructor(
    private readonly toks: Token[],
    private readonly file: string,
  ) {}

  private peek(): Token {
    if (this.nest > 0) while (this.toks[this.i]!.t === 'nl') this.i++;
    return this.toks[this.i]!;
  }
  private next(): Token {
    const t = this.peek();
    this.i++;
    return t;
  }
  private is(v: string): boolean {
    const t = this.peek();
    return t.t === 'punct' && t.v === v;
  }
  private fail(msg: string): never {
    throw new HclSyntaxError(`${this.file}:${this.peek().line}: ${msg}`);
  }
  private expect(v: string): void {
    if (!this.is(v)) this.fail(`expected ${v}, found ${JSON.stringify(this.peek().v)}`);
    this.i++;
  }

  body(closing: boolean): Body {
    const body: Body = { attrs: [], blocks: [] };
    for (;;) {
      const t = this.toks[this.i]!;
      if (t.t === 'nl') {
        this.i++;
        continue;
      }
      if (t.t === 'eof') {
        if (closing) this.fail('unclosed block');
        return body;
      }
      if (t.t === 'punct' && t.v === '}') {
        if (!closing) this.fail('unexpected }');
        this.i++;
        return body;
      }
      if (t.t !== 'id') this.fail(`expected an argument or block name, found ${JSON.stringify(t.v)}`);
      this.i++;
      const after = this.toks[this.i]!;
      if (after.t === 'punct' && after.v === '=') {
        this.i++;
        body.attrs.push({ name: t.v, expr: this.expr(), line: t.line });
        const end = this.toks[this.i]!;
        if (end.t === 'nl') this.i++;
        else if (!(end.t === 'eof' || (end.t === 'punct' && end.v === '}')))
          this.fail(`unexpected ${JSON.stringify(end.v)} after the value of ${t.v}`);
        continue;
      }
      const labels: string[] = [];
      while (this.toks[this.i]!.t === 'str' || this.toks[this.i]!.t === 'id')
        labels.push(this.toks[this.i++]!.v);
      if (!(this.toks[this.i]!.t === 'punct' && this.toks[this.i]!.v === '{'))
        this.fail(`expected = or { after ${t.v}`);
      this.i++;
      body.blocks.push({ type: t.v, labels, body: this.body(true), line: t.line });
    }
  }

  expr(): Expr {
    const c = this.binary(0);
    if (this.is('?')) {
      this.i++;
      const a = this.expr();
      this.expect(':');
      const b = this.expr();
      return { k: 'cond', c, a, b };
    }
    return c;
  }

  private binary(min: number): Expr {
    let l = this.unary();
    for (;;) {
      const t = this.peek();
      const p = t.t === 'punct' ? BINARY[t.v] : undefined;
      if (p === undefined || p <= min) return l;
      this.i++;
      l = { k: 'bin', op: t.v, l, r: this.binary(p) };
    }
  }

  private unary(): Expr {
    if (this.is('!') || this.is('-')) {
      const op = this.next().v;
      return { k: 'un', op, e: this.unary() };
    }
    return this.postfix(this.primary());
  }

  private postfix(e: Expr): Expr {
    for (;;) {
      if (this.is('.')) {
        this.i++;
        const t = this.next();
        if (t.t === 'punct' && t.v === '*') {
          e = { k: 'splat', obj: e, steps: this.splatSteps() };
        } else if (t.t === 'id') e = { k: 'attr', obj: e, name: t.v };
        else if (t.t === 'num') e = { k: 'index', obj: e, key: { k: 'lit', v: Number(t.v) } };
        else this.fail('expected an attribute name after .');
      } else if (this.is('[')) {
        this.i++;
        this.nest++;
        if (this.is('*')) {
          this.i++;
          this.expect(']');
          this.nest--;
          e = { k: 'splat', obj: e, steps: this.splatSteps() };
          continue;
        }
        const key = this.expr();
        this.expect(']');
        this.nest--;
        e = { k: 'index', obj: e, key };
      } else return e;
    }
  }

  private splatSteps(): Step[] {
    const steps: Step[] = [];
    for (;;) {
      if (this.is('.')) {
        this.i++;
        const t = this.next();
        if (t.t !== 'id') this.fail('expected an attribute after a splat');
        steps.push({ k: 'attr', name: t.v });
      } else if (this.is('[')) {
        this.i++;
        this.nest++;
        const key = this.expr();
        this.expect(']');
        this.nest--;
        steps.push({ k: 'index', key });
      } else return steps;
    }
  }

  private primary(): Expr {
    const t = this.next();
    switch (t.t) {
      case 'num':
        return { k: 'lit', v: Number(t.v) };
      case 'str':
        return parseTemplate(t.v, this.file, t.line, true);
      case 'heredoc':
        return parseTemplate(t.v, this.file, t.line, false);
      case 'id': {
        if (t.v === 'true' || t.v === 'false') return { k: 'lit', v: t.v === 'true' };
        if (t.v === 'null') return { k: 'lit', v: null };
        if (this.is('(')) {
          this.i++;
          this.nest++;
          const args: Expr[] = [];
          while (!this.is(')')) {
            args.push(this.expr());
            if (this.is('...')) this.i++;
            if (!this.is(')')) this.expect(',');
          }
          this.i++;
          this.nest--;
          return { k: 'call', fn: t.v, args };
        }
        return { k: 'name', name: t.v };
      }
      case 'punct':
        if (t.v === '(') {
          this.nest++;
          const e = this.expr();
          this.expect(')');
          this.nest--;
          return e;
        }
        if (t.v === '[') return this.tuple();
        if (t.v === '{') return this.object();
        break;
    }
    this.fail(`unexpected ${JSON.stringify(t.v)} in an expression`);
  }

  private tuple(): Expr {
    this.nest++;
    if (this.peek().t === 'id' && this.peek().v === 'for') return this.forExpr(false);
    const items: Expr[] = [];
    while (!this.is(']')) {
      items.push(this.expr());
      if (!this.is(']')) this.expect(',');
    }
    this.i++;
    this.nest--;
    return { k: 'tuple', items };
  }

  private object(): Expr {
    this.nest++;
    if (this.peek().t === 'id' && this.peek().v === 'for') return this.forExpr(true);
    const items: [Expr, Expr][] = [];
    while (!this.is('}')) {
      const keyTok = this.peek();
      let key: Expr;
      if (keyTok.t === 'id' && !(this.toks[this.i + 1]?.v === '(')) {
        this.i++;
        key = { k: 'lit', v: keyTok.v };
      } else key = this.expr();
      if (this.is('=') || this.is(':')) this.i++;
      else this.fail('expected = in an object');
      items.push([key, this.expr()]);
      if (this.is(',')) this.i++;
    }
    this.i++;
    this.nest--;
    return { k: 'object', items };
  }

  private forExpr(object: boolean): Expr {
    this.i++; // for
    const first = this.next().v;
    let key: string | undefined;
    let value = first;
    if (this.is(',')) {
      this.i++;
      key = first;
      value = this.next().v;
    }
    const inTok = this.next();
    if (inTok.v !== 'in') this.fail('expected in');
    const coll = this.expr();
    this.expect(':');
    let outKey: Expr | undefined;
    let out = this.expr();
    let group = false;
    if (object) {
      this.expect('=>');
      outKey = out;
      out = this.expr();
      if (this.is('...')) {
        this.i++;
        group = true;
      }
    }
    let cond: Expr | undefined;
    if (this.peek().t === 'id' && this.peek().v === 'if') {
      this.i++;
      cond = this.expr();
    }
    this.expect(object ? '}' : ']');
    this.nest--;
    return { k: 'for', object, key, value, coll, out, outKey, cond, group };
  }
}

function unescapeHcl(s: string): string {
  return s.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_, e: string) => {
    if (e.startsWith('u')) return String.fromCharCode(Number.parseInt(e.slice(1), 16));
    return ({ n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\' } as Record<string, string>)[e] ?? e;
  });
}

/** Parses the inside of a quoted string (escapes on) or a heredoc into literal parts and interpolations. */
function parseTemplate(raw: string, file: string, line: number, quoted: boolean): Expr {
  const parts: (string | Expr)[] = [];
  let lit = '';
  let i = 0;
  while (i < raw.length) {
    if ((raw[i] === '$' || raw[i] === '%') && raw[i + 1] === raw[i] && raw[i + 2] === '{') {
      lit += `${raw[i]}{`;
      i += 3;
    } else if (raw[i] === '%' && raw[i + 1] === '{') {
      throw new HclSyntaxError(`${file}:${line}: template directives are not supported by this checker`);
    } else if (raw[i] === '$' && raw[i + 1] === '{') {
      const end = skipInterpolation(raw, i + 2, file, line);
      if (lit) parts.push(quoted ? unescapeHcl(lit) : lit);
      lit = '';
      const inner = raw
        .slice(i + 2, end)
        .replace(/^~/, '')
        .replace(/~$/, '');
      parts.push(parseExpression(inner, file, line));
      i = end + 1;
    } else if (quoted && raw[i] === '\\') {
      lit += raw.slice(i, i + 2);
      i += 2;
    } else lit += raw[i++];
  }
  if (lit) parts.push(quoted ? unescapeHcl(lit) : lit);
  if (parts.length === 0) return { k: 'lit', v: '' };
  if (parts.length === 1 && typeof parts[0] === 'string') return { k: 'lit', v: parts[0] };
  return { k: 'tmpl', parts };
}

/** Parses one expression. */
export function parseExpression(text: string, file = '<expr>', line = 1): Expr {
  const p = new Parser(
    tokenize(text, file, line).filter((t) => t.t !== 'nl'),
    file,
  );
  const e = p.expr();
  return e;
}

/** Parses a file's text into its body. Throws HclSyntaxError. */
export function parseBody(text: string, file: string): Body {
  return new Parser(tokenize(text, file), file).body(false);
}

/** A Terraform module: each file's body, and everything it declares. */
export interface TfModule {
  /** The module's directory (`path.module`; texts given in memory may name one too). */
  dir: string;
  files: Record<string, Body>;
  /** Top-level blocks with the file they are in. */
  blocks: (Block & { file: string })[];
  variables: Map<string, Body>;
  locals: Map<string, Expr>;
  resources: Map<string, Block>; // "type.name"
  data: Map<string, Block>;
  ephemeral: Map<string, Block>;
  providers: Map<string, Block>;
}

/** Reads every .tf file of a directory (or the given texts) into a module. */
export function readModule(dir: string, texts?: Record<string, string>): TfModule {
  const sources =
    texts ??
    Object.fromEntries(
      readdirSync(dir)
        .filter((f) => f.endsWith('.tf'))
        .sort()
        .map((f) => [f, readFileSync(join(dir, f), 'utf8')]),
    );
  const m: TfModule = {
    dir,
    files: {},
    blocks: [],
    variables: new Map(),
    locals: new Map(),
    resources: new Map(),
    data: new Map(),
    ephemeral: new Map(),
    providers: new Map(),
  };
  for (const [file, text] of Object.entries(sources)) {
    const body = parseBody(text, file);
    m.files[file] = body;
    for (const b of body.blocks) {
      m.blocks.push({ ...b, file });
      const [a, c] = b.labels;
      if (b.type === 'variable') m.variables.set(a!, b.body);
      else if (b.type === 'locals') for (const l of b.body.attrs) m.locals.set(l.name, l.expr);
      else if (b.type === 'resource') m.resources.set(`${a}.${c}`, b);
      else if (b.type === 'data') m.data.set(`${a}.${c}`, b);
      else if (b.type === 'ephemeral') m.ephemeral.set(`${a}.${c}`, b);
      else if (b.type === 'provider') m.providers.set(a!, b);
    }
  }
  return m;
}

/** An attribute of a body, by name. */
export function attr(body: Body, name: string): Expr | undefined {
  return body.attrs.find((a) => a.name === name)?.expr;
}

/** The nested blocks of a body with a type. */
export function blocks(body: Body, type: string): Block[] {
  return body.blocks.filter((b) => b.type === type);
}

/** Every traversal in an expression, as its root name and the attribute names that follow it. */
export function* traversals(e: Expr): Generator<{ root: string; path: string[] }> {
  const chain = (x: Expr): { root: string; path: string[] } | undefined => {
    if (x.k === 'name') return { root: x.name, path: [] };
    if (x.k === 'attr') {
      const c = chain(x.obj);
      return c && { root: c.root, path: [...c.path, x.name] };
    }
    if (x.k === 'index' || x.k === 'splat') return chain(x.obj);
    return undefined;
  };
  const c = chain(e);
  if (c) yield c;
  switch (e.k) {
    case 'lit':
    case 'name':
      return;
    case 'tmpl':
      for (const p of e.parts) if (typeof p !== 'string') yield* traversals(p);
      return;
    case 'attr':
      if (!c) yield* traversals(e.obj);
      return;
    case 'index':
      if (!c) yield* traversals(e.obj);
      yield* traversals(e.key);
      return;
    case 'splat':
      if (!c) yield* traversals(e.obj);
      for (const s of e.steps) if (s.k === 'index') yield* traversals(s.key);
      return;
    case 'call':
      for (const a of e.args) yield* traversals(a);
      return;
    case 'tuple':
      for (const a of e.items) yield* traversals(a);
      return;
    case 'object':
      for (const [kx, v] of e.items) {
        if (kx.k !== 'name') yield* traversals(kx);
        yield* traversals(v);
      }
      return;
    case 'for': {
      yield* traversals(e.coll);
      const bound = new Set([e.value, ...(e.key ? [e.key] : [])]);
      for (const x of [e.out, e.outKey, e.cond])
        if (x) for (const t of traversals(x)) if (!bound.has(t.root)) yield t;
      return;
    }
    case 'cond':
      yield* traversals(e.c);
      yield* traversals(e.a);
      yield* traversals(e.b);
      return;
    case 'bin':
      yield* traversals(e.l);
      yield* traversals(e.r);
      return;
    case 'un':
      yield* traversals(e.e);
      return;
  }
}
