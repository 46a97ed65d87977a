/**
 * terraform/ as the Terraform tests see it: the module, its files' text, the
 * README, the two examples with what their comments say to pass through the
 * environment, and helpers that plan them as `terraform plan -var-file` would.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { failedValidations, type Plan, planModule, planScope, tfvars, variableValues } from './tf-eval.js';
import {
  attr,
  type Block,
  type Expr,
  parseBody,
  readModule,
  type TfModule,
  traversals,
} from './tf-syntax.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DIR = join(ROOT, 'terraform');
export const TEXT: Record<string, string> = Object.fromEntries(
  readdirSync(DIR)
    .filter((f) => f.endsWith('.tf'))
    .sort()
    .map((f) => [f, readFileSync(join(DIR, f), 'utf8')]),
);
export const MODULE: TfModule = readModule(DIR);

/** A stand-in for `npm run package`'s output (.tmp/package), so that plans do not depend on a build. */
export const PACKAGE_DIR = (() => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-package-'));
  mkdirSync(join(dir, 'dist', 'bundle'), { recursive: true });
  writeFileSync(join(dir, 'dist', 'bundle', 'index.js'), 'export {};\n');
  writeFileSync(join(dir, 'package.json'), '{"main":"dist/bundle/index.js"}\n');
  return dir;
})();

export const example = (name: string): Record<string, unknown> =>
  tfvars(readFileSync(join(DIR, 'examples', name), 'utf8'), name, parseBody);

/** The single-tenant example, with the Upstash REST token its comment says to export. */
export const SINGLE: Record<string, unknown> = {
  ...example('single-tenant.tfvars'),
  upstash_redis_rest_token: 'rest-token',
  source_dir: PACKAGE_DIR,
};
/** The multi-tenant example, with the Upstash API key its comment says to export. */
export const MULTI: Record<string, unknown> = {
  ...example('multi-tenant.tfvars'),
  upstash_api_key: 'api-key',
  source_dir: PACKAGE_DIR,
};

/** Variables and their failed validations; `scope` only when every variable is valid, as Terraform stops there. */
export function variables(
  given: Record<string, unknown>,
  known: Record<string, Record<string, unknown>> = {},
  m: TfModule = MODULE,
) {
  const vars = variableValues(m, given);
  const failures = failedValidations(m, vars);
  return {
    vars,
    failures,
    get scope() {
      if (failures.length > 0) throw new Error(`invalid variables:\n${failures.join('\n')}`);
      return planScope(m, vars, known);
    },
  };
}

/** The whole plan of `given`; throws when a validation fails, or where Terraform's plan would stop. */
export function fullPlan(
  given: Record<string, unknown>,
  known: Record<string, Record<string, unknown>> = {},
  m: TfModule = MODULE,
): Plan {
  const { vars, failures } = variables(given, {}, m);
  if (failures.length > 0) throw new Error(`invalid variables:\n${failures.join('\n')}`);
  return planModule(m, vars, known);
}

/** A resource block of the module, by address. */
export function resource(address: string, m: TfModule = MODULE): Block {
  const r = m.resources.get(address);
  if (!r) throw new Error(`no resource ${address}`);
  return r;
}

/** The references in an expression, as dotted paths (google_x.y.attr, local.z). */
export const refs = (e: Expr | undefined): string[] =>
  e ? [...traversals(e)].map((t) => [t.root, ...t.path].join('.')) : [];

/** What a resource's depends_on names. */
export const dependsOn = (address: string): string[] => refs(attr(resource(address).body, 'depends_on'));

/** A resource's lifecycle block, if any. */
export const lifecycle = (address: string): Block['body'] | undefined =>
  resource(address).body.blocks.find((b) => b.type === 'lifecycle')?.body;

/** One instance's planned arguments and blocks. */
export function planned(p: Plan, address: string, key = ''): Record<string, unknown> {
  const instance = p.instances.get(address)?.get(key);
  if (!instance) throw new Error(`no instance ${address}[${JSON.stringify(key)}] in the plan`);
  return instance;
}

/** The nested blocks of a type in a planned instance (or block). */
export function blocksOf(value: Record<string, unknown>, type: string): Record<string, unknown>[] {
  const found = value[type];
  if (found === undefined) return [];
  if (!Array.isArray(found)) throw new Error(`${type} is not a list of blocks`);
  return found as Record<string, unknown>[];
}

export const README = readFileSync(join(DIR, 'README.md'), 'utf8');
