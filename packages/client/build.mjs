/**
 * Builds the `gcp-token-broker-client` package into `dist/`: esbuild bundles
 * the client (`index.js`), its google-auth-library adapter (`google-auth.js`)
 * and the `broker-token` CLI (`cli.js`) from `src/`, with no runtime
 * dependency; tsc writes the type declarations to `dist/types`.
 * google-auth-library stays an optional peer: only `google-auth.js` and the
 * CLI's default ID-token source import it.
 *
 * The wall: the client may import its own `src/`, the wire contract
 * (`packages/wire/`), Node's builtins and google-auth-library, and nothing
 * else. Any other import fails the build, naming the file that made it.
 *
 * `node build.mjs --pack DIR` then packs the package into DIR (made if
 * missing) and prints the tarball's path.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { walls } from './walls.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(`${root}package.json`);

let esbuild;
try {
  esbuild = await import(pathToFileURL(require.resolve('esbuild')).href);
} catch {
  process.stderr.write('build: esbuild is missing; run `npm install` at the repository root first.\n');
  process.exit(1);
}

const { version } = JSON.parse(readFileSync(`${here}package.json`, 'utf8'));

rmSync(`${here}dist`, { recursive: true, force: true });
try {
  await esbuild.build({
    entryPoints: {
      index: `${here}src/index.ts`,
      'google-auth': `${here}src/auth-client.ts`,
      cli: `${here}src/cli/broker-token.ts`,
    },
    outdir: `${here}dist`,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    chunkNames: 'chunks/[name]-[hash]',
    // `broker-token --version` (src/cli/version.ts).
    define: { BROKER_TOKEN_VERSION: JSON.stringify(version) },
    logLevel: 'silent',
    plugins: [walls({ root, client: here })],
  });
} catch (err) {
  for (const e of err.errors ?? []) process.stderr.write(`build: ${e.text}\n`);
  if (!err.errors) process.stderr.write(`build: ${err}\n`);
  process.exit(1);
}
const tsc = spawnSync(
  process.execPath,
  [`${root}node_modules/typescript/bin/tsc`, '-p', `${here}tsconfig.json`],
  {
    encoding: 'utf8',
  },
);
if (tsc.status !== 0) {
  process.stderr.write(`${tsc.stdout}${tsc.stderr}`);
  process.exit(1);
}

const packAt = process.argv.indexOf('--pack');
if (packAt >= 0) {
  const dest = resolve(process.argv[packAt + 1] ?? `${root}dist`);
  mkdirSync(dest, { recursive: true });
  const packed = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], {
    cwd: here,
    encoding: 'utf8',
  });
  if (packed.status !== 0) {
    process.stderr.write(packed.stderr);
    process.exit(1);
  }
  const [info] = JSON.parse(packed.stdout);
  process.stdout.write(`${resolve(dest, info.filename)}\n`);
}
