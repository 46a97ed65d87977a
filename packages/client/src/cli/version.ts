/** The package's version, as `broker-token --version` prints it. */
import { createRequire } from 'node:module';

// build.mjs defines it from package.json when it bundles the CLI.
declare const BROKER_TOKEN_VERSION: string | undefined;

/** `version` of packages/client/package.json. */
export function version(): string {
  if (typeof BROKER_TOKEN_VERSION === 'string') return BROKER_TOKEN_VERSION;
  // Run from source (tests): src/cli/ is two levels below the package.json.
  const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
  return pkg.version;
}
