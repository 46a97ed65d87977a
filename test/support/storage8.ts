import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * `@google-cloud/storage` 8 (google-auth-library 11 inside) declares Node >= 22, so it is not a
 * dependency of the repository (whose floor is Node 20.19, where npm would warn EBADENGINE for each of
 * its packages): `npm run test:node22` installs it into test/node22/ and runs the suite on Node 22.
 */
const HOME = fileURLToPath(new URL('../node22/', import.meta.url));
const MAJOR = Number(process.versions.node.split('.')[0]);

/**
 * Whether Storage 8 tests can run: on Node 22+, with test/node22 installed. Under `CI=true` on Node 22
 * a missing install is a failure, not a skip.
 */
export function storage8Available(): boolean {
  if (MAJOR < 22) return false;
  if (existsSync(`${HOME}node_modules/storage8/package.json`)) return true;
  if (process.env['CI'] === 'true')
    throw new Error(
      `${HOME}node_modules/storage8 is missing: npm run test:node22 installs it (npm run setup:node22)`,
    );
  return false;
}

/** Storage 8's module, typed as Storage 7's (their shared API): its types need Node 22's install. */
export async function importStorage8(): Promise<typeof import('storage7')> {
  const entry = createRequire(`${HOME}package.json`).resolve('storage8');
  return (await import(pathToFileURL(entry).href)) as typeof import('storage7');
}
