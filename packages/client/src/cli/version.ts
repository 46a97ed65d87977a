/** The package's version, as `broker-token --version` prints it. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// build.mjs defines it from package.json when it bundles the CLI.
declare const BROKER_TOKEN_VERSION: string | undefined;

const NAME = 'gcp-token-broker-client';

/** `version` of packages/client/package.json. */
export function version(): string {
  if (typeof BROKER_TOKEN_VERSION === 'string') return BROKER_TOKEN_VERSION;
  // Run from source (tests) or from tsc's output (the repository's own bin): the client's
  // package.json is the nearest one above this file, or packages/client/ beside the repository's.
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    for (const file of [join(dir, 'package.json'), join(dir, 'packages/client/package.json')]) {
      if (!existsSync(file)) continue;
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === NAME && pkg.version) return pkg.version;
    }
    if (dirname(dir) === dir) return 'unknown';
  }
}
