/**
 * Google's filter languages, for the subset terraform/monitoring.tf uses, so
 * that tests evaluate its filters on real broker output instead of grepping:
 * - the Logging query language (log-based metric filters): comparisons
 *   `path = "v"`, `!=`, `<`, `<=`, `>`, `>=`, `:` (has; `:*` for presence),
 *   `=~` / `!~` (RE2 search), joined by AND, OR, NOT, `-`, parentheses and
 *   juxtaposition (an implicit AND). As in Logging, NOT binds tightest, then
 *   OR, then AND: `a AND b OR c` is `a AND (b OR c)`.
 * - the Monitoring filter syntax of alert conditions and dashboards: the same
 *   comparisons on `metric.type`, `metric.label.K`, `resource.type`, with the
 *   `one_of(...)` value function.
 * - log-based metric extractors: `EXTRACT(path)` and `REGEXP_EXTRACT(path, "re")`.
 * And how Cloud Run's logging agent turns a JSON line on stdout into a LogEntry.
 */

type Node =
  | { k: 'and' | 'or'; items: Node[] }
  | { k: 'not'; e: Node }
  | { k: 'cmp'; path: string[]; op: string; value: Value };
type Value = { k: 'str'; v: string } | { k: 'any' } | { k: 'one_of'; vs: string[] };

interface Tok {
  t: 'word' | 'str' | 'op' | '(' | ')' | ',' | 'eof';
  v: string;
}

const OPS = ['=~', '!~', '>=', '<=', '!=', '=', '>', '<', ':'];

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '"') {
      let v = '';
      i++;
      while (i < src.length && src[i] !== '"') {
        if (src[i] === '\\') {
          v += src[i + 1];
          i += 2;
        } else v += src[i++];
      }
      if (src[i] !== '"') throw new Error(`unterminated string in filter: ${src}`);
      i++;
      out.push({ t: 'str', v });
    } else if (c === '(' || c === ')' || c === ',') {
      out.push({ t: c, v: c });
      i++;
    } else {
      const op = OPS.find((o) => src.startsWith(o, i));
      if (op) {
        out.push({ t: 'op', v: op });
        i += op.length;
      } else {
        const m = /^[^\s"()=!<>:,]+/.exec(src.slice(i));
        if (!m) throw new Error(`unexpected ${c} in filter: ${src}`);
        out.push({ t: 'word', v: m[0] });
        i += m[0].length;
      }
    }
  }
  out.push({ t: 'eof', v: '' });
  return out;
}

class FilterParser {
  private i = 0;
  constructor(private readonly toks: Tok[]) {}
  private peek() {
    return this.toks[this.i]!;
  }
  parse(): Node {
    const n = this.and();
    if (this.peek().t !== 'eof') throw new Error(`unexpected ${this.peek().v} in filter`);
    return n;
  }
  private and(): Node {
    const items = [this.or()];
    for (;;) {
      const t = this.peek();
      if (t.t === 'word' && t.v === 'AND') {
        this.i++;
        items.push(this.or());
      } else if (t.t === 'eof' || t.t === ')') break;
      else items.push(this.or()); // juxtaposition is AND
    }
    return items.length === 1 ? items[0]! : { k: 'and', items };
  }
  private or(): Node {
    const items = [this.not()];
    while (this.peek().t === 'word' && this.peek().v === 'OR') {
      this.i++;
      items.push(this.not());
    }
    return items.length === 1 ? items[0]! : { k: 'or', items };
  }
  private not(): Node {
    const t = this.peek();
    if (t.t === 'word' && t.v === 'NOT') {
      this.i++;
      return { k: 'not', e: this.not() };
    }
    if (t.t === 'word' && t.v.startsWith('-') && t.v.length > 1) {
      this.toks[this.i] = { t: 'word', v: t.v.slice(1) };
      return { k: 'not', e: this.not() };
    }
    return this.primary();
  }
  private primary(): Node {
    const t = this.peek();
    if (t.t === '(') {
      this.i++;
      const n = this.and();
      if (this.peek().t !== ')') throw new Error('expected ) in filter');
      this.i++;
      return n;
    }
    const path = this.path();
    const op = this.peek();
    if (op.t !== 'op') throw new Error(`a bare term (${path.join('.')}) is not supported by this evaluator`);
    this.i++;
    return { k: 'cmp', path, op: op.v, value: this.value() };
  }
  private path(): string[] {
    const t = this.peek();
    this.i++;
    if (t.t === 'str') return [t.v];
    if (t.t !== 'word') throw new Error(`expected a field, found ${t.v}`);
    // a.b."c.d".e: a word may end with a dot followed by a quoted segment
    const parts: string[] = [];
    let word = t.v;
    for (;;) {
      parts.push(...word.split('.').filter((p) => p !== ''));
      if (word.endsWith('.') && this.peek().t === 'str') {
        parts.push(this.peek().v);
        this.i++;
        const next = this.peek();
        if (next.t === 'word' && next.v.startsWith('.')) {
          this.i++;
          word = next.v;
          continue;
        }
      }
      return parts;
    }
  }
  private value(): Value {
    const t = this.peek();
    this.i++;
    if (t.t === 'str') return { k: 'str', v: t.v };
    if (t.t === 'word' && t.v === '*') return { k: 'any' };
    if (t.t === 'word' && t.v === 'one_of' && this.peek().t === '(') {
      this.i++;
      const vs: string[] = [];
      while (this.peek().t !== ')') {
        const s = this.peek();
        if (s.t !== 'str' && s.t !== 'word') throw new Error('bad one_of');
        vs.push(s.v);
        this.i++;
        if (this.peek().t === ',') this.i++;
      }
      this.i++;
      return { k: 'one_of', vs };
    }
    if (t.t === 'word') return { k: 'str', v: t.v };
    throw new Error(`expected a value, found ${t.v}`);
  }
}

/** Parses a Logging query or a Monitoring filter. Throws on anything outside the subset. */
export function parseFilter(filter: string): Node {
  return new FilterParser(lex(filter)).parse();
}

/** The values at a path: several when the path crosses an array (any element may match). */
function lookup(doc: unknown, path: string[]): unknown[] {
  let values: unknown[] = [doc];
  for (const p of path) {
    values = values.flatMap((v) => {
      if (Array.isArray(v))
        return v.map((x) => (x && typeof x === 'object' ? (x as Record<string, unknown>)[p] : undefined));
      return v && typeof v === 'object' && Object.hasOwn(v, p) ? [(v as Record<string, unknown>)[p]] : [];
    });
  }
  return values.flatMap((v) => (Array.isArray(v) ? v : [v])).filter((v) => v !== undefined && v !== null);
}

function compare(actual: unknown, op: string, value: Value): boolean {
  if (value.k === 'any') return op === ':';
  if (value.k === 'one_of') return op === '=' && value.vs.includes(String(actual));
  const v = value.v;
  const numeric = typeof actual === 'number' && v.trim() !== '' && !Number.isNaN(Number(v));
  const a = numeric
    ? (actual as number)
    : typeof actual === 'object'
      ? JSON.stringify(actual)
      : String(actual);
  const b = numeric ? Number(v) : v;
  switch (op) {
    case '=':
      return a === b;
    case '!=':
      return a !== b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    case ':':
      return String(a).toLowerCase().includes(String(b).toLowerCase());
    case '=~':
      return new RegExp(v).test(String(a));
    case '!~':
      return !new RegExp(v).test(String(a));
  }
  throw new Error(`operator ${op}`);
}

function test(n: Node, doc: unknown): boolean {
  switch (n.k) {
    case 'and':
      return n.items.every((x) => test(x, doc));
    case 'or':
      return n.items.some((x) => test(x, doc));
    case 'not':
      return !test(n.e, doc);
    case 'cmp': {
      const values = lookup(doc, n.path);
      if (n.op === '!=' || n.op === '!~') return values.every((v) => compare(v, n.op, n.value));
      return values.some((v) => compare(v, n.op, n.value));
    }
  }
}

/** Whether a log entry (or a Monitoring time series' metric and resource) matches a filter. */
export function matches(filter: string, doc: unknown): boolean {
  return test(parseFilter(filter), doc);
}

/**
 * A log-based metric's extractor applied to an entry: the label or value
 * Logging would record, or undefined when the field is absent or the regular
 * expression does not match (Logging then leaves the label empty).
 */
export function extract(extractor: string, entry: unknown): string | undefined {
  const m = /^(EXTRACT|REGEXP_EXTRACT)\(\s*([^,\s)]+)\s*(?:,\s*"((?:[^"\\]|\\.)*)"\s*)?\)$/.exec(
    extractor.trim(),
  );
  if (!m) throw new Error(`unsupported extractor ${extractor}`);
  const [, fn, field, re] = m;
  const value = lookup(entry, field!.split('.'))[0];
  if (value === undefined) return undefined;
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (fn === 'EXTRACT') return text;
  const pattern = new RegExp(re!.replace(/\\(["\\])/g, '$1'));
  if (pattern.source.split('(').length - 1 - (pattern.source.match(/\(\?/g)?.length ?? 0) !== 1)
    throw new Error(`REGEXP_EXTRACT needs exactly one capture group: ${re}`);
  return pattern.exec(text)?.[1];
}

/** LogEntry fields that Cloud Run's agent takes out of a structured line (everything else stays in jsonPayload). */
const SPECIAL: Record<string, string> = {
  severity: 'severity',
  httpRequest: 'httpRequest',
  time: 'timestamp',
  timestamp: 'timestamp',
  'logging.googleapis.com/insertId': 'insertId',
  'logging.googleapis.com/labels': 'labels',
  'logging.googleapis.com/operation': 'operation',
  'logging.googleapis.com/sourceLocation': 'sourceLocation',
  'logging.googleapis.com/spanId': 'spanId',
  'logging.googleapis.com/trace': 'trace',
  'logging.googleapis.com/trace_sampled': 'traceSampled',
};

/**
 * The LogEntry Cloud Logging stores for one line a Cloud Run (gen2 function)
 * container printed on stdout: a JSON object becomes jsonPayload with the
 * special fields lifted out; anything else becomes textPayload.
 */
export function toLogEntry(
  line: string,
  where: { projectId: string; service: string; region: string; log?: string },
): Record<string, unknown> {
  const entry: Record<string, unknown> = {
    logName: `projects/${where.projectId}/logs/${encodeURIComponent(where.log ?? 'run.googleapis.com/stdout')}`,
    resource: {
      type: 'cloud_run_revision',
      labels: {
        project_id: where.projectId,
        service_name: where.service,
        location: where.region,
        revision_name: `${where.service}-00001-abc`,
        configuration_name: where.service,
      },
    },
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    parsed = undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    entry['textPayload'] = line;
    entry['severity'] = 'DEFAULT';
    return entry;
  }
  const payload: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) {
    const special = SPECIAL[k];
    if (special) entry[special] = v;
    else payload[k] = v;
  }
  entry['severity'] ??= 'DEFAULT';
  entry['jsonPayload'] = payload;
  return entry;
}
