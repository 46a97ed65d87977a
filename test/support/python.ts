import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The virtualenv `.ci/run` makes (`python3 -m venv .venv && .venv/bin/pip install google-auth requests`). */
export const PYTHON = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));

/**
 * Whether Python tests can run. Under `CI=true` a missing interpreter is a
 * failure, not a skip: the caller's `describe` throws instead of skipping.
 */
export function pythonAvailable(): boolean {
  if (existsSync(PYTHON)) return true;
  if (process.env['CI'] === 'true') {
    throw new Error(
      `${PYTHON} is missing: .ci/run makes it (python3 -m venv .venv; pip install google-auth requests)`,
    );
  }
  return false;
}

/** Runs a Python script with the virtualenv's interpreter; resolves with stdout, rejects with stderr on a non-zero exit. */
export function runPython(
  script: string,
  env: Record<string, string | undefined> = {},
  timeoutMs = 30_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`python exited ${code}:\n${err.slice(-4000)}`)),
    );
  });
}
