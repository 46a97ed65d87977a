/**
 * `npm run package`: the deployable source for Cloud Functions in
 * .tmp/package (Terraform zips it): the bundle (`dist/bundle/`, see
 * infra/bundle.ts) as `main`, a package.json with the runtime dependencies
 * only and an empty `gcp-build`, so Cloud Build installs but does not
 * rebuild, and a lockfile pruned to those dependencies. The bundle needs
 * only the ones it leaves out (the functions framework, the Secret Manager
 * client, gRPC, google-auth-library); the others stay listed so that the
 * lockfile keeps pinning every version the bundle was built from.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './broker-process.js';

const out = join(ROOT, '.tmp', 'package');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
const deployed = {
  name: pkg['name'],
  version: pkg['version'],
  private: true,
  type: pkg['type'],
  main: 'dist/bundle/index.js',
  engines: { node: '22' },
  dependencies: pkg['dependencies'],
  scripts: { 'gcp-build': '' },
};
writeFileSync(join(out, 'package.json'), `${JSON.stringify(deployed, null, 2)}\n`);
// A lockfile for exactly these dependencies, resolved from the repo's lockfile versions.
cpSync(join(ROOT, 'package-lock.json'), join(out, 'package-lock.json'));
execFileSync('npm', ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], {
  cwd: out,
  stdio: 'ignore',
});
cpSync(join(ROOT, 'dist', 'bundle'), join(out, 'dist', 'bundle'), { recursive: true });
console.log(`packaged ${out} (dist/bundle, package.json, package-lock.json)`);
