import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from '@cdktf/hcl2json';

/** One Terraform module, parsed with hcl2json: every .tf file merged. */
export interface Module {
  files: Record<string, Record<string, unknown>>;
  variables: Map<string, Record<string, unknown>>;
  locals: Set<string>;
  resources: Map<string, Record<string, unknown>>; // "type.name" → body
  data: Set<string>; // "type.name"
}

/** Parses every .tf file of a directory (or the given texts). */
export async function loadModule(dir: string, texts?: Record<string, string>): Promise<Module> {
  const sources =
    texts ??
    Object.fromEntries(
      readdirSync(dir)
        .filter((f) => f.endsWith('.tf'))
        .map((f) => [f, readFileSync(join(dir, f), 'utf8')]),
    );
  const m: Module = {
    files: {},
    variables: new Map(),
    locals: new Set(),
    resources: new Map(),
    data: new Set(),
  };
  for (const [name, text] of Object.entries(sources)) {
    const json = (await parse(name, text)) as Record<string, unknown>;
    m.files[name] = json;
    for (const [v, bodies] of Object.entries((json['variable'] ?? {}) as Record<string, unknown[]>))
      m.variables.set(v, bodies[0] as Record<string, unknown>);
    for (const block of (json['locals'] ?? []) as Record<string, unknown>[])
      for (const l of Object.keys(block)) m.locals.add(l);
    for (const [type, byName] of Object.entries(
      (json['resource'] ?? {}) as Record<string, Record<string, unknown[]>>,
    )) {
      for (const [n, bodies] of Object.entries(byName))
        m.resources.set(`${type}.${n}`, bodies[0] as Record<string, unknown>);
    }
    for (const [type, byName] of Object.entries(
      (json['data'] ?? {}) as Record<string, Record<string, unknown>>,
    )) {
      for (const n of Object.keys(byName)) m.data.add(`${type}.${n}`);
    }
  }
  return m;
}

/** Every string in a parsed value, with its path. */
export function* strings(value: unknown, path = ''): Generator<[string, string]> {
  if (typeof value === 'string') yield [path, value];
  else if (Array.isArray(value)) for (const [i, v] of value.entries()) yield* strings(v, `${path}[${i}]`);
  else if (value && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) yield* strings(v, path ? `${path}.${k}` : k);
}

const RESOURCE_TYPE = /^(?:google|google-beta|random|archive|upstash|null|time|tls)_[a-z0-9_]+$/;

/** References that do not resolve: `var.X`, `local.X`, `data.T.N` and `T.N` resources, in every expression. */
export function unresolvedReferences(m: Module): string[] {
  const problems: string[] = [];
  for (const [file, json] of Object.entries(m.files)) {
    for (const [path, s] of strings(json)) {
      if (!s.includes('${')) continue;
      // Strip quoted string literals inside expressions, so text like "roles/run.invoker" is not read as a reference.
      const expr = s.replace(/"(?:[^"\\]|\\.)*"/g, '""');
      for (const match of expr.matchAll(
        /(?<![\w.])([a-z][a-z0-9_-]*)\.([a-zA-Z_][\w-]*)(?:\.([a-zA-Z_][\w-]*))?/g,
      )) {
        const [, head, a, b] = match;
        const where = `${file}: ${path}`;
        if (head === 'var' && !m.variables.has(a!)) problems.push(`${where}: var.${a} is not declared`);
        else if (head === 'local' && !m.locals.has(a!)) problems.push(`${where}: local.${a} is not declared`);
        else if (head === 'data' && !m.data.has(`${a}.${b}`))
          problems.push(`${where}: data.${a}.${b} is not declared`);
        else if (head !== undefined && RESOURCE_TYPE.test(head) && !m.resources.has(`${head}.${a}`)) {
          problems.push(`${where}: ${head}.${a} is not declared`);
        }
      }
    }
  }
  return problems;
}
