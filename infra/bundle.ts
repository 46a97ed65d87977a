/**
 * The deployed functions as one ES module (`dist/bundle/index.js`), built by
 * esbuild from `functions/index.ts`: the broker, jose and @upstash/redis in
 * one file, so a cold instance reads and compiles one file instead of ~260
 * modules (the bench's load-time breakdown shows the difference). Code that
 * an L2 hit never runs is split into chunks loaded on first use: the
 * example job and @upstash/ratelimit. Left out, and installed from the
 * lockfile at deploy: the functions framework (it must be the same instance
 * that loads this module), and the Secret Manager client, gRPC and
 * google-auth-library, which are imported lazily.
 */
import { build } from 'esbuild';
import { ROOT } from './broker-process.js';

const EXTERNAL = [
  '@google-cloud/functions-framework',
  '@google-cloud/secret-manager',
  '@grpc/grpc-js',
  'google-auth-library',
];

const result = await build({
  entryPoints: { index: `${ROOT}functions/index.ts` },
  outdir: `${ROOT}dist/bundle`,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  mainFields: ['module', 'main'],
  // Whitespace and syntax only: names stay, so stack traces in the logs stay readable.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.entries(result.metafile.outputs)
  .filter(([file]) => file.endsWith('.js'))
  .map(([file, out]) => `${file.replace(/^.*dist\//, 'dist/')} ${(out.bytes / 1024).toFixed(0)} KiB`);
console.log(`bundled: ${bytes.join(', ')}`);
