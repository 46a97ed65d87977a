import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { captureLogLines } from './capture.js';

const require = createRequire(import.meta.url);

/** The repo root, from dist/infra/ or infra/. */
export const ROOT = fileURLToPath(
  new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url),
);

/**
 * What we deploy: the functions bundled into one module by `infra/bundle.ts`
 * (`npm run build` makes it). Broker processes in the tests and the bench
 * load it, so they test what runs in Cloud Functions.
 */
export const BUNDLE = `${ROOT}dist/bundle/index.js`;

/** A broker started as `functions-framework --target=<target>`, the way Cloud Functions runs it. */
export interface BrokerProcess {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Every line the broker wrote to stdout and stderr so far. */
  readonly lines: string[];
  stop(): Promise<void>;
}

/** Finds a free loopback port. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Starts the bundled functions (`BUNDLE`) under the real functions framework on a
 * random loopback port and waits until it answers. Rejects with the broker's
 * output when it exits first (e.g. on a configuration error).
 */
export async function startBrokerProcess(options: {
  target: string;
  env: Record<string, string | undefined>;
  port?: number;
  nodePath?: string;
  startTimeoutMs?: number;
  /** The built module to load (default: the broker's). */
  source?: string;
  /**
   * Append the process's stdout and stderr to this file instead of piping
   * them here (then `lines` stays empty). The bench uses it so that the load
   * generator's process does not also parse every log line.
   */
  logFile?: string;
}): Promise<BrokerProcess> {
  const port = options.port ?? (await freePort());
  const logFile = options.logFile === undefined ? undefined : openSync(options.logFile, 'a');
  const main = join(dirname(require.resolve('@google-cloud/functions-framework')), 'main.js');
  const child = spawn(
    options.nodePath ?? process.execPath,
    [main, `--target=${options.target}`, `--port=${port}`, `--source=${options.source ?? BUNDLE}`],
    {
      cwd: ROOT,
      env: { PATH: process.env['PATH'], NODE_ENV: 'production', HOST: '127.0.0.1', ...options.env },
      stdio: logFile === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFile, logFile],
    },
  );
  if (logFile !== undefined) closeSync(logFile);
  const lines: string[] = [];
  const collect = (chunk: Buffer) => {
    const fresh = chunk
      .toString('utf8')
      .split('\n')
      .filter((line) => line.trim() !== '');
    lines.push(...fresh);
    captureLogLines(fresh);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) =>
      reject(new Error(`broker exited with ${code} before it answered:\n${lines.join('\n')}`)),
    ),
  );
  exited.catch(() => {});
  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  for (;;) {
    const ready = await Promise.race([
      fetch(url, { method: 'OPTIONS', signal: AbortSignal.timeout(1000) }).then(
        () => true,
        () => false,
      ),
      exited,
    ]);
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`broker did not answer within the start timeout:\n${lines.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    child,
    lines,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}
