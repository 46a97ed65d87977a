import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { freePort, ROOT } from '../broker-process.js';

const require = createRequire(import.meta.url);
const FF_MAIN = join(dirname(require.resolve('@google-cloud/functions-framework')), 'main.js');

/**
 * Cold start: milliseconds from spawning `functions-framework --target` to
 * the first 200 answer of `request`, polling every 2 ms. Returns the time
 * and the process's RSS (MB) right after.
 */
export async function coldStart(options: {
  source: string;
  target: string;
  env: Record<string, string>;
  request: (url: string) => Promise<Response>;
}): Promise<{ ms: number; rssMb: number }> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [FF_MAIN, `--target=${options.target}`, `--port=${port}`, `--source=${options.source}`],
    {
      cwd: ROOT,
      env: { PATH: process.env['PATH'], NODE_ENV: 'production', ...options.env },
      stdio: 'ignore',
    },
  );
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${options.target} exited with ${child.exitCode}`);
      const ok = await options.request(`http://127.0.0.1:${port}`).then(
        async (r) => {
          await r.arrayBuffer();
          return r.status === 200;
        },
        () => false,
      );
      if (ok) break;
      if (performance.now() - started > 20_000) throw new Error(`${options.target} did not answer`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const ms = performance.now() - started;
    return { ms, rssMb: rssMb(child.pid!) };
  } finally {
    child.kill('SIGKILL');
  }
}

/** Resident memory of a process, in MB (Linux). */
export function rssMb(pid: number): number {
  const status = execFileSync('cat', [`/proc/${pid}/status`], { encoding: 'utf8' });
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

/** Milliseconds to import each module in a fresh process (median of `runs`), for the load-time breakdown. */
export function importTimes(modules: string[], runs = 3): Array<{ module: string; ms: number }> {
  return modules.map((module) => {
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const out = execFileSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const t = performance.now(); await import(${JSON.stringify(module)}); console.log('import-ms', performance.now() - t);`,
        ],
        {
          cwd: ROOT,
          encoding: 'utf8',
          env: {
            ...process.env,
            BROKER_POLICY:
              '{"serviceAccounts":[{"email":"a@p.iam.gserviceaccount.com","key":"file:k"}],"grants":[]}',
            BROKER_AUDIENCE: 'x',
            BROKER_JWKS_URL: 'http://127.0.0.1:9/certs',
          },
        },
      );
      // The broker's own lines (a policy warning, say) may come after ours: take ours by its mark.
      times.push(Number(/^import-ms (\S+)$/m.exec(out)?.[1]));
    }
    times.sort((a, b) => a - b);
    return { module, ms: times[Math.floor(times.length / 2)]! };
  });
}
