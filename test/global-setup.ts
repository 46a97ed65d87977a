import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Builds `dist/`, the deployed bundle and the client package once, so that integration tests can
 * start real broker processes from it (type errors are reported by `npm run typecheck`; here
 * they only warn, since tsc still emits). Then, for the whole run, captures
 * every broker log line and every secret the stand-ins hand out, and after
 * the run fails it if any secret, token or key appears in any log line.
 */
export default function setup(): () => void {
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
  // Then the bundle that is deployed, which every broker process in the tests loads.
  const bundle = spawnSync(process.execPath, [`${root}dist/infra/bundle.js`], {
    cwd: root,
    encoding: 'utf8',
  });
  if (bundle.status !== 0)
    throw new Error(`global-setup: the bundle failed:\n${bundle.stdout}${bundle.stderr}`);
  // And the client package, whose broker-token bin tests run as a user would (`npx broker-token`).
  const client = spawnSync(process.execPath, [`${root}packages/client/build.mjs`], {
    cwd: root,
    encoding: 'utf8',
  });
  if (client.status !== 0)
    throw new Error(`global-setup: the client package failed to build:\n${client.stdout}${client.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'broker-capture-'));
  process.env['BROKER_TEST_CAPTURE_DIR'] = dir;
  return () => {
    const report = scanForLeaks(dir);
    rmSync(dir, { recursive: true, force: true });
    process.stdout.write(
      `\nleak scan: ${report.lines} broker log lines checked against ${report.secrets} issued secrets\n`,
    );
    if (report.leaks.length > 0) {
      throw new Error(`secrets found in broker logs:\n${report.leaks.slice(0, 5).join('\n')}`);
    }
  };
}

/** Looks for issued tokens, private-key fragments and anything token-shaped in every captured log line. */
export function scanForLeaks(dir: string): { lines: number; secrets: number; leaks: string[] } {
  const files = readdirSync(dir);
  const secrets = new Set<string>();
  for (const f of files.filter((f) => f.startsWith('secrets-'))) {
    for (const s of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (s === '') continue;
      if (s.includes('PRIVATE KEY')) {
        // Every base64 line of the PEM body is a secret fragment.
        for (const part of s.split('\\n')) if (/^[A-Za-z0-9+/]{40,}={0,2}$/.test(part)) secrets.add(part);
      } else secrets.add(s);
    }
  }
  const leaks: string[] = [];
  let lines = 0;
  const shaped =
    /ya29\.[\w.-]{8,}|eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}|PRIVATE KEY|[A-Za-z0-9+/]{40,}={0,2}/g;
  for (const f of files.filter((f) => f.startsWith('lines-'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (line === '') continue;
      lines++;
      for (const m of line.matchAll(shaped)) {
        const candidate = m[0];
        if (/^(ya29\.|eyJ|PRIVATE KEY)/.test(candidate) || secrets.has(candidate))
          leaks.push(`${f}: …${candidate.slice(0, 12)}…`);
      }
      for (const s of secrets)
        if (s.length >= 20 && line.includes(s.slice(0, 40)))
          leaks.push(`${f}: issued secret …${s.slice(0, 8)}…`);
    }
  }
  return { lines, secrets: secrets.size, leaks };
}
