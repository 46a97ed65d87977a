import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Builds `dist/` once, so that integration tests can start real broker
 * processes from it. Type errors are reported by `npm run typecheck`; here
 * they only warn, since tsc still emits.
 */
export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const result = spawnSync(
    process.execPath,
    [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.json`],
    {
      cwd: root,
      encoding: 'utf8',
    },
  );
  if (result.status !== 0)
    process.stderr.write(`global-setup: tsc reported problems:\n${result.stdout}${result.stderr}\n`);
}
