/**
 * Builds the `gcp-token-broker-client` package into `dist/`: esbuild bundles
 * the client (`index.js`), its google-auth-library adapter (`google-auth.js`)
 * and the `broker-token` CLI (`cli.js`) from the repo's `shared/client` and
 * `functions/cli`, with no runtime dependency; tsc writes the type
 * declarations to `dist/types`. google-auth-library stays an optional peer:
 * only `google-auth.js` and the CLI's default ID-token source import it.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

rmSync(`${here}dist`, { recursive: true, force: true });
await build({
  entryPoints: {
    index: `${root}shared/client/core.ts`,
    'google-auth': `${root}shared/client/auth-client.ts`,
    cli: `${root}functions/cli/broker-token.ts`,
  },
  outdir: `${here}dist`,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['google-auth-library'],
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
});
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
