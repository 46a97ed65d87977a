/**
 * Checks a Terraform module against its providers' published schemas, with no
 * terraform binary: every resource, data source, ephemeral resource and
 * provider block (arguments, nested blocks and how many, required ones) and
 * every reference (variables, locals, resources and the attributes read).
 *
 * Schemas come from the CDKTF prebuilt bindings (`@cdktf/provider-google`
 * 16.12.1 = hashicorp/google 6.50.0, `@cdktf/provider-random` = random 3.7.2,
 * `@cdktf/provider-archive` = archive 2.7.1, `@cdktf/provider-time` 11.0.1 =
 * time 0.13.1): each `.jsii` manifest is
 * generated from `terraform providers schema -json` and carries every argument
 * (its registry anchor gives the Terraform name), its required-ness, and each
 * nested block's type and nesting. What the bindings do not cover is in
 * EXTRA_SCHEMAS below, each entry with its source.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Block, type Body, type Expr, type TfModule, traversals } from './tf-syntax.js';

export interface BlockSchema {
  /** Arguments one may set, and whether each is required. */
  args: Map<string, { required: boolean }>;
  /** Nested blocks: required (at least one), at most one, and their own schema. */
  blocks: Map<string, { required: boolean; single: boolean; schema: BlockSchema }>;
  /** Every attribute one may read (arguments, blocks and computed attributes). */
  readable: Set<string>;
}

export interface ProviderSchema {
  provider: BlockSchema;
  resources: Map<string, BlockSchema>;
  data: Map<string, BlockSchema>;
  ephemeral: Map<string, BlockSchema>;
}

interface JsiiType {
  kind: string;
  datatype?: boolean;
  fqn: string;
  docs?: { summary?: string; remarks?: string };
  initializer?: { parameters?: { type: JsiiTypeRef }[] };
  properties?: JsiiProperty[];
}
interface JsiiProperty {
  name: string;
  optional?: boolean;
  static?: boolean;
  protected?: boolean;
  docs?: { remarks?: string; summary?: string };
  type: JsiiTypeRef;
}
type JsiiTypeRef = {
  fqn?: string;
  primitive?: string;
  collection?: { kind: string; elementtype: JsiiTypeRef };
  union?: { types: JsiiTypeRef[] };
};

const require = createRequire(import.meta.url);
const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The struct a property's type refers to (a nested block), and whether it is a single object. */
function structOf(
  t: JsiiTypeRef,
  types: Record<string, JsiiType>,
): { fqn: string; single: boolean } | undefined {
  if (t.fqn && types[t.fqn]?.datatype) return { fqn: t.fqn, single: true };
  if (t.collection) {
    const inner = structOf(t.collection.elementtype, types);
    return inner && { fqn: inner.fqn, single: false };
  }
  if (t.union)
    for (const u of t.union.types) {
      const inner = structOf(u, types);
      if (inner) return inner;
    }
  return undefined;
}

const memo = new Map<string, BlockSchema>();

function blockSchema(fqn: string, types: Record<string, JsiiType>, getters?: JsiiProperty[]): BlockSchema {
  const known = getters ? undefined : memo.get(fqn);
  if (known) return known;
  const s: BlockSchema = { args: new Map(), blocks: new Map(), readable: new Set() };
  if (!getters) memo.set(fqn, s);
  for (const p of types[fqn]?.properties ?? []) {
    // The registry anchor carries the Terraform name, e.g. ".../cloudfunctions2_function#build_config".
    const name = /#([a-z0-9_]+) /.exec(p.docs?.remarks ?? '')?.[1] ?? snake(p.name);
    const struct = structOf(p.type, types);
    if (struct) {
      s.blocks.set(name, {
        required: !p.optional,
        single: struct.single,
        schema: blockSchema(struct.fqn, types),
      });
    } else s.args.set(name, { required: !p.optional });
    s.readable.add(name);
  }
  // Computed attributes: the resource class's getters, or for a nested block its OutputReference class's.
  for (const g of getters ?? types[`${fqn}OutputReference`]?.properties ?? [])
    if (!g.static && !g.protected && !g.name.endsWith('Input') && g.name !== 'internalValue')
      s.readable.add(snake(g.name));
  return s;
}

const LINK =
  /^Represents a \{@link https:\/\/registry\.terraform\.io\/providers\/[\w-]+\/[\w-]+\/[\d.]+\/docs(?:\/(resources|data-sources)\/\w+)? ([\w]+)\}/;

/** Reads one CDKTF prebuilt provider package's schema from its .jsii manifest. */
export function readCdktfSchema(pkg: string): ProviderSchema {
  const file = join(dirname(require.resolve(`${pkg}/package.json`)), '.jsii');
  const types = (JSON.parse(readFileSync(file, 'utf8')) as { types: Record<string, JsiiType> }).types;
  const out: ProviderSchema = {
    provider: { args: new Map(), blocks: new Map(), readable: new Set() },
    resources: new Map(),
    data: new Map(),
    ephemeral: new Map(),
  };
  for (const t of Object.values(types)) {
    if (t.kind !== 'class') continue;
    const m = LINK.exec(t.docs?.summary ?? '');
    const config = t.initializer?.parameters?.[2]?.type.fqn;
    if (!m || !config) continue;
    const schema = blockSchema(config, types, t.properties);
    if (m[1] === 'resources') out.resources.set(m[2]!, schema);
    else if (m[1] === 'data-sources') out.data.set(m[2]!, schema);
    else out.provider = schema;
  }
  return out;
}

/** A schema as JSON: each distinct block once, nested blocks by index (the bindings share them widely). */
interface Packed {
  blocks: [args: [string, 0 | 1][], nested: [string, 0 | 1, 0 | 1, number][], readable: string[]][];
  provider: number;
  resources: [string, number][];
  data: [string, number][];
}

function pack(s: ProviderSchema): Packed {
  const ids = new Map<BlockSchema, number>();
  const out: Packed = { blocks: [], provider: 0, resources: [], data: [] };
  const id = (b: BlockSchema): number => {
    const known = ids.get(b);
    if (known !== undefined) return known;
    const i = out.blocks.length;
    ids.set(b, i);
    out.blocks.push([[], [], []]);
    out.blocks[i] = [
      [...b.args].map(([n, a]) => [n, a.required ? 1 : 0]),
      [...b.blocks].map(([n, x]) => [n, x.required ? 1 : 0, x.single ? 1 : 0, id(x.schema)]),
      [...b.readable],
    ];
    return i;
  };
  out.provider = id(s.provider);
  out.resources = [...s.resources].map(([n, b]) => [n, id(b)]);
  out.data = [...s.data].map(([n, b]) => [n, id(b)]);
  return out;
}

function unpack(p: Packed): ProviderSchema {
  const made = p.blocks.map((): BlockSchema => ({ args: new Map(), blocks: new Map(), readable: new Set() }));
  p.blocks.forEach(([args, nested, readable], i) => {
    const b = made[i]!;
    for (const [n, r] of args) b.args.set(n, { required: r === 1 });
    for (const [n, r, single, j] of nested)
      b.blocks.set(n, { required: r === 1, single: single === 1, schema: made[j]! });
    for (const n of readable) b.readable.add(n);
  });
  return {
    provider: made[p.provider]!,
    resources: new Map(p.resources.map(([n, i]) => [n, made[i]!])),
    data: new Map(p.data.map(([n, i]) => [n, made[i]!])),
    ephemeral: new Map(),
  };
}

/**
 * A provider package's schema, read from its .jsii manifest once and then
 * from a compact copy in node_modules/.cache (the google manifest is ~100 MB;
 * the copy is keyed by the package version and the manifest's size, and by
 * this file's extraction code, so a changed package or extractor rebuilds it).
 */
export function loadCdktfSchema(
  pkg: string,
  packageJson = require.resolve(`${pkg}/package.json`),
): ProviderSchema {
  const dir = dirname(packageJson);
  const version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string })
    .version;
  const code = createHash('sha256')
    .update(readFileSync(fileURLToPath(import.meta.url)))
    .digest('hex')
    .slice(0, 12);
  const key = `${pkg.replace(/\W+/g, '_')}-${version}-${statSync(join(dir, '.jsii')).size}-${code}.json`;
  const cacheDir = join(dir, '..', '..', '.cache', 'tf-schema');
  const cached = join(cacheDir, key);
  if (existsSync(cached)) return unpack(JSON.parse(readFileSync(cached, 'utf8')) as Packed);
  const schema = readCdktfSchema(pkg);
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${cached}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(pack(schema)));
  renameSync(tmp, cached); // atomic: parallel test workers never read half a file
  return schema;
}

/** A schema written by hand: args "name" or "name!" (required); computed attributes listed apart. */
function handSchema(args: string[], computed: string[] = []): BlockSchema {
  const s: BlockSchema = { args: new Map(), blocks: new Map(), readable: new Set(computed) };
  for (const a of args) {
    const name = a.replace(/!$/, '');
    s.args.set(name, { required: a.endsWith('!') });
    s.readable.add(name);
  }
  return s;
}

/**
 * Schemas the CDKTF bindings lack, each copied from the provider's own source:
 * - `ephemeral "random_bytes"`: hashicorp/terraform-provider-random v3.9.0,
 *   internal/provider/ephemeral_bytes.go (CDKTF 0.21 bindings have no
 *   ephemeral resources at all).
 * - the upstash provider (upstash/terraform-provider-upstash v2.x,
 *   upstash/provider.go and upstash/redis/database/resource.go): no CDKTF
 *   prebuilt binding exists.
 * - `google_project_service_identity`, a google-beta resource only:
 *   hashicorp/terraform-provider-google-beta v6.50.0 (the last 6.x release),
 *   google-beta/services/resourcemanager/resource_project_service_identity.go.
 *   The module uses google-beta for this one resource; the provider block's
 *   schema is google's, which google-beta shares (loadSchemas).
 * - `terraform_data`, built into Terraform (internal/builtin/providers/
 *   terraform/resource_data.go): no provider package carries it.
 */
export const EXTRA_SCHEMAS: Record<string, Partial<ProviderSchema>> = {
  random: {
    ephemeral: new Map([['random_bytes', handSchema(['length!'], ['base64', 'hex'])]]),
  },
  'google-beta': {
    resources: new Map([
      ['google_project_service_identity', handSchema(['service!', 'project'], ['id', 'email', 'member'])],
    ]),
  },
  terraform: {
    resources: new Map([['terraform_data', handSchema(['input', 'triggers_replace'], ['id', 'output'])]]),
  },
  upstash: {
    provider: handSchema(['email!', 'api_key!']),
    resources: new Map([
      [
        'upstash_redis_database',
        handSchema(
          [
            'database_name!',
            'region!',
            'consistent',
            'multizone',
            'tls',
            'eviction',
            'auto_scale',
            'budget',
            'prod_pack',
            'primary_region',
            'read_regions',
            'ip_allowlist',
          ],
          ['database_id', 'endpoint', 'password', 'port', 'rest_token', 'read_only_rest_token', 'state'],
        ),
      ],
    ]),
  },
};

/** Every provider's schema, by local provider name. */
export function loadSchemas(): Record<string, ProviderSchema> {
  const google = loadCdktfSchema('@cdktf/provider-google');
  const out: Record<string, ProviderSchema> = {
    google,
    'google-beta': {
      provider: google.provider,
      resources: EXTRA_SCHEMAS['google-beta']!.resources!,
      data: new Map(),
      ephemeral: new Map(),
    },
    random: loadCdktfSchema('@cdktf/provider-random'),
    archive: loadCdktfSchema('@cdktf/provider-archive'),
    // Resolved here by name, so that knip sees the package used (knip.json lists the others).
    time: loadCdktfSchema('@cdktf/provider-time', require.resolve('@cdktf/provider-time/package.json')),
    terraform: {
      provider: handSchema([]),
      resources: EXTRA_SCHEMAS['terraform']!.resources!,
      data: new Map(),
      ephemeral: new Map(),
    },
    upstash: {
      provider: EXTRA_SCHEMAS['upstash']!.provider!,
      resources: EXTRA_SCHEMAS['upstash']!.resources!,
      data: new Map(),
      ephemeral: new Map(),
    },
  };
  for (const [name, k] of [['random', 'ephemeral']] as const)
    for (const [t, s] of EXTRA_SCHEMAS[name]![k]!) out[name]![k].set(t, s);
  return out;
}

const META = {
  resource: ['count', 'for_each', 'depends_on', 'provider'],
  data: ['count', 'for_each', 'depends_on', 'provider'],
  ephemeral: ['count', 'for_each', 'depends_on', 'provider'],
} as const;
const META_BLOCKS = new Set(['lifecycle', 'provisioner', 'connection']);
const ROOTS_ALWAYS = new Set(['path', 'terraform', 'self']);

function checkBody(
  body: Body,
  schema: BlockSchema,
  where: string,
  meta: readonly string[],
  problems: string[],
) {
  for (const a of body.attrs) {
    if (meta.includes(a.name)) continue;
    if (schema.blocks.has(a.name))
      problems.push(`${where}.${a.name} (line ${a.line}): is a block, write ${a.name} { ... }`);
    else if (!schema.args.has(a.name))
      problems.push(`${where}.${a.name} (line ${a.line}): unsupported argument`);
  }
  const seen = new Map<string, number>();
  for (const b of body.blocks) {
    if (meta.length > 0 && META_BLOCKS.has(b.type)) continue;
    const name = b.type === 'dynamic' ? b.labels[0]! : b.type;
    const nested = schema.blocks.get(name);
    if (!nested) {
      problems.push(
        schema.args.has(name)
          ? `${where}.${name} (line ${b.line}): is an argument, write ${name} = ...`
          : `${where}.${name} (line ${b.line}): unsupported block type`,
      );
      continue;
    }
    seen.set(name, (seen.get(name) ?? 0) + 1);
    if (b.type === 'dynamic') {
      const content = b.body.blocks.find((c) => c.type === 'content');
      for (const a of b.body.attrs)
        if (!['for_each', 'iterator', 'labels'].includes(a.name))
          problems.push(`${where}.dynamic.${name}.${a.name} (line ${a.line}): unsupported argument`);
      if (!content) problems.push(`${where}.dynamic.${name} (line ${b.line}): no content block`);
      else checkBody(content.body, nested.schema, `${where}.${name}`, [], problems);
    } else checkBody(b.body, nested.schema, `${where}.${name}`, [], problems);
  }
  for (const [name, s] of schema.args)
    if (s.required && !body.attrs.some((a) => a.name === name))
      problems.push(`${where}: the argument ${name} is required`);
  for (const [name, s] of schema.blocks) {
    const n = seen.get(name) ?? 0;
    if (s.required && n === 0) problems.push(`${where}: at least one ${name} block is required`);
    if (s.single && n > 1 && !body.blocks.some((b) => b.type === 'dynamic' && b.labels[0] === name))
      problems.push(`${where}: at most one ${name} block is allowed`);
  }
}

function* expressions(body: Body): Generator<{ expr: Expr; line: number; iterators: Set<string> }> {
  const iterators = new Set<string>();
  function* walk(
    b: Body,
    skip: readonly string[],
  ): Generator<{ expr: Expr; line: number; iterators: Set<string> }> {
    for (const a of b.attrs) if (!skip.includes(a.name)) yield { expr: a.expr, line: a.line, iterators };
    for (const x of b.blocks) {
      if (x.type === 'dynamic') {
        const it = x.body.attrs.find((a) => a.name === 'iterator');
        iterators.add(it?.expr.k === 'name' ? it.expr.name : x.labels[0]!);
      }
      yield* walk(x.body, x.type === 'lifecycle' ? ['ignore_changes'] : []);
    }
  }
  // A variable's type is a type expression, and a resource's provider a provider name: neither is a reference.
  yield* walk(body, ['type', 'provider']);
}

/** Which provider a resource type belongs to: the longest provider name that prefixes it. */
function providerOf(type: string, providers: string[]): string | undefined {
  return providers
    .filter((p) => type === p || type.startsWith(`${p}_`))
    .sort((a, b) => b.length - a.length)[0];
}

/** The provider a block uses: its `provider` meta-argument (e.g. google-beta), or the one its type names. */
function providerOfBlock(b: Block, providers: string[]): string | undefined {
  const meta = b.body.attrs.find((a) => a.name === 'provider')?.expr;
  if (meta?.k === 'name') return meta.name;
  if (meta?.k === 'attr' && meta.obj.k === 'name') return meta.obj.name; // google-beta.alias
  return providerOf(b.labels[0]!, providers);
}

/** Providers built into Terraform, which required_providers does not list. */
const BUILTIN = new Set(['terraform']);

/** Checks the references of one block: declared names, and attributes that the schema has. */
function checkReferences(
  m: TfModule,
  block: Block,
  where: string,
  schemas: Record<string, ProviderSchema>,
  problems: string[],
) {
  const providers = Object.keys(schemas);
  const readable = (kind: 'resources' | 'data' | 'ephemeral', type: string) =>
    schemas[providerOf(type, providers) ?? '']?.[kind].get(type)?.readable;
  for (const { expr, line, iterators } of expressions(block.body)) {
    for (const { root, path } of traversals(expr)) {
      const at = `${where} (line ${line})`;
      if (ROOTS_ALWAYS.has(root) || iterators.has(root)) continue;
      if (root === 'each' || root === 'count') {
        const arg = root === 'each' ? 'for_each' : 'count';
        if (!block.body.attrs.some((a) => a.name === arg))
          problems.push(`${at}: ${root}.${path[0]} is used without ${arg}`);
      } else if (root === 'var') {
        if (!m.variables.has(path[0]!)) problems.push(`${at}: var.${path[0]} is not declared`);
      } else if (root === 'local') {
        if (!m.locals.has(path[0]!)) problems.push(`${at}: local.${path[0]} is not declared`);
      } else if (root === 'data' || root === 'ephemeral') {
        const address = `${path[0]}.${path[1]}`;
        if (!(root === 'data' ? m.data : m.ephemeral).has(address))
          problems.push(`${at}: ${root}.${address} is not declared`);
        else if (path[2] && !readable(root === 'data' ? 'data' : 'ephemeral', path[0]!)?.has(path[2]))
          problems.push(`${at}: ${root}.${address} has no attribute ${path[2]}`);
      } else if (m.resources.has(`${root}.${path[0]}`)) {
        // Follow the path through nested blocks: google_x.y.block.attr must exist at each step.
        const declared = m.resources.get(`${root}.${path[0]}`)!;
        let schema = schemas[providerOfBlock(declared, providers) ?? '']?.resources.get(root);
        for (const [i, segment] of path.slice(1).entries()) {
          if (!schema) break;
          if (!schema.readable.has(segment)) {
            problems.push(`${at}: ${[root, ...path.slice(0, i + 1)].join('.')} has no attribute ${segment}`);
            break;
          }
          schema = schema.blocks.get(segment)?.schema;
        }
      } else if (providerOf(root, providers) || /_/.test(root)) {
        problems.push(`${at}: ${root}.${path[0]} is not declared`);
      } else problems.push(`${at}: unknown name ${root}`);
    }
  }
}

/**
 * Ephemeral values (ephemeral variables, ephemeral resources, and locals made
 * from them) may only flow into write-only arguments (`*_wo`), provider
 * blocks, other locals and ephemeral resources, and a variable's own
 * validation: anywhere else Terraform would have to save them.
 */
function ephemeralProblems(m: TfModule): string[] {
  const problems: string[] = [];
  const ephemeralVars = new Set(
    [...m.variables]
      .filter(([, b]) =>
        b.attrs.some((a) => a.name === 'ephemeral' && a.expr.k === 'lit' && a.expr.v === true),
      )
      .map(([n]) => n),
  );
  const ephemeralLocals = new Set<string>();
  const source = (e: Expr): string | undefined => {
    for (const { root, path } of traversals(e)) {
      if (root === 'var' && ephemeralVars.has(path[0]!)) return `var.${path[0]}`;
      if (root === 'ephemeral') return `ephemeral.${path[0]}.${path[1]}`;
      if (root === 'local' && ephemeralLocals.has(path[0]!)) return `local.${path[0]}`;
    }
    return undefined;
  };
  for (let grew = true; grew; ) {
    grew = false;
    for (const [name, e] of m.locals)
      if (!ephemeralLocals.has(name) && source(e)) {
        ephemeralLocals.add(name);
        grew = true;
      }
  }
  const walk = (body: Body, where: string, own: string | undefined) => {
    for (const a of body.attrs) {
      if (a.name.endsWith('_wo')) continue;
      const found = source(a.expr);
      if (found && !(own && found === `var.${own}`))
        problems.push(
          `${where}.${a.name} (line ${a.line}): the ephemeral ${found} can only go to write-only arguments, provider blocks, locals and ephemeral resources`,
        );
    }
    for (const b of body.blocks) walk(b.body, `${where}.${b.type === 'dynamic' ? b.labels[0] : b.type}`, own);
  };
  for (const b of m.blocks) {
    if (['terraform', 'locals', 'provider', 'ephemeral'].includes(b.type)) continue;
    if (b.type === 'output' && b.body.attrs.some((a) => a.name === 'ephemeral')) continue;
    walk(
      b.body,
      `${b.file}: ${b.type}.${b.labels.join('.')}`,
      b.type === 'variable' ? b.labels[0] : undefined,
    );
  }
  return problems;
}

/** Every problem Terraform's validate would find in the module that this check models; [] when it is sound. */
export function checkModule(m: TfModule, schemas: Record<string, ProviderSchema>): string[] {
  const problems: string[] = [];
  const providers = Object.keys(schemas);
  const required = new Set<string>();
  for (const b of m.blocks.filter((b) => b.type === 'terraform'))
    for (const rp of b.body.blocks.filter((x) => x.type === 'required_providers'))
      for (const a of rp.body.attrs) required.add(a.name);
  for (const b of m.blocks) {
    const [type, name] = b.labels;
    const where = `${b.file}: ${b.type === 'resource' ? '' : `${b.type}.`}${type}${name ? `.${name}` : ''}`;
    if (b.type === 'resource' || b.type === 'data' || b.type === 'ephemeral') {
      const kind = b.type === 'resource' ? 'resources' : b.type;
      const provider = providerOfBlock(b, providers);
      const schema = provider ? schemas[provider]?.[kind].get(type!) : undefined;
      if (!schema)
        problems.push(
          `${where} (line ${b.line}): unknown ${b.type} type ${type}${provider && provider !== providerOf(type!, providers) ? ` in provider ${provider}` : ''}`,
        );
      else {
        if (!required.has(provider!) && !BUILTIN.has(provider!))
          problems.push(`${where}: provider ${provider} is not in required_providers`);
        checkBody(b.body, schema, where, META[b.type], problems);
      }
    } else if (b.type === 'provider') {
      const schema = schemas[type!]?.provider;
      if (!schema) problems.push(`${where} (line ${b.line}): unknown provider ${type}`);
      else checkBody(b.body, schema, where, ['alias'], problems);
    } else if (
      !['terraform', 'variable', 'locals', 'output', 'check', 'moved', 'import', 'removed'].includes(b.type)
    ) {
      problems.push(`${where} (line ${b.line}): unsupported top-level block ${b.type}`);
    }
    if (b.type !== 'terraform') checkReferences(m, b, where, schemas, problems);
  }
  problems.push(...ephemeralProblems(m));
  return problems;
}
