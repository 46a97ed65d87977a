/**
 * The three rooms and their walls (README, "Development"): the core
 * (`shared/`) imports neither the doors nor the client; the client package
 * imports only itself and the wire contract; the wire contract imports
 * nothing; the stand-ins import none of the code they stand in for. Read
 * from every file's import specifiers, and the client's build wall tried on
 * a file that breaks it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a build script, plain JavaScript
import { walls } from '../../packages/client/walls.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SPEC = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'dist') out.push(...files(p));
    } else if (/\.(ts|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every import of `file`: a repo-relative path for relative ones, the specifier for packages. */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(SPEC)].map((m) => {
    const spec = (m[1] ?? m[2]) as string;
    return spec.startsWith('.') ? relative(ROOT, resolve(ROOT, dirname(file), spec)) : spec;
  });
}

const builtins = new Set(builtinModules);
const isBuiltin = (s: string) => s.startsWith('node:') || builtins.has(s);
/** An npm package: not a path into this repository. */
const isPackage = (s: string) => !/^(shared|functions|infra|packages|test)\//.test(s) && !s.startsWith('.');
const under = (s: string, ...dirs: string[]) => dirs.some((d) => s.startsWith(`${d}/`));

/** Imports of files under `dir` that `allowed` refuses, as `file → import`. */
function breaches(dir: string, allowed: (spec: string, file: string) => boolean): string[] {
  return files(dir).flatMap((f) =>
    imports(f)
      .filter((s) => !allowed(s, f))
      .map((s) => `${f} → ${s}`),
  );
}

describe('the walls between rooms', () => {
  it('the core imports only itself, the wire contract, Node and npm packages', () => {
    expect(
      breaches('shared', (s) => isBuiltin(s) || isPackage(s) || under(s, 'shared', 'packages/wire')),
    ).toEqual([]);
  });

  it('the doors import the core and the wire, never the client, but for the example job (a caller)', () => {
    expect(
      breaches(
        'functions',
        (s, f) =>
          !under(s, 'infra', 'test') && (!under(s, 'packages/client') || f.startsWith('functions/examples/')),
      ),
    ).toEqual([]);
  });

  it('the client package imports only itself, the wire contract, Node and google-auth-library', () => {
    expect(
      breaches(
        'packages/client/src',
        (s) =>
          isBuiltin(s) || s === 'google-auth-library' || under(s, 'packages/client/src', 'packages/wire'),
      ),
    ).toEqual([]);
  });

  it('the wire contract imports nothing but itself', () => {
    expect(breaches('packages/wire', (s) => under(s, 'packages/wire'))).toEqual([]);
  });

  it('the stand-ins import none of the code they stand in for', () => {
    for (const dir of [
      'infra/google',
      'infra/oidc',
      'infra/secret-manager',
      'infra/upstash',
      'infra/redis',
    ]) {
      expect(breaches(dir, (s) => !under(s, 'shared', 'functions', 'packages'))).toEqual([]);
    }
  });

  it("the client's build fails on an import past its wall, naming the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'client-wall-'));
    try {
      const src = join(ROOT, 'packages/client/src');
      const entry = join(src, `.wall-test-${process.pid}.ts`);
      writeFileSync(
        entry,
        "import { SETTINGS } from '../../../shared/settings.js';\nexport const n = SETTINGS;\n",
      );
      try {
        const attempt = build({
          entryPoints: [entry],
          outdir: dir,
          bundle: true,
          format: 'esm',
          platform: 'node',
          logLevel: 'silent',
          plugins: [walls({ root: ROOT, client: join(ROOT, 'packages/client') })],
        });
        await expect(attempt).rejects.toThrow(
          /imports shared\/settings\.js: the client package may import only/,
        );
      } finally {
        rmSync(entry, { force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
