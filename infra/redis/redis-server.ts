/**
 * Starts a throwaway `redis-server` on 127.0.0.1 for tests: a random free
 * port, no persistence, a temp dir, and a handle to stop, crash (SIGKILL) and
 * restart it on the same port.
 *
 * Tests that need it follow this pattern, so that a developer without
 * redis-server skips them while CI (CI=true) fails loudly:
 *
 *   describe.skipIf(!redisAvailable && process.env.CI !== 'true')('...', () => {
 *     beforeAll(async () => { redis = await startRedisServer(); });
 *     afterAll(async () => { await redis?.stop(); });
 *   });
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** A running redis-server started by `startRedisServer`. */
export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** The server's working directory. */
  readonly dir: string;
  /** The current process id, or undefined while it is not running. */
  readonly pid: number | undefined;
  /** SIGTERM, wait for the exit, remove the temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit, to simulate a crash. */
  kill(): Promise<void>;
  /** Starts the server again on the same port (stopping it first if it runs). */
  restart(): Promise<void>;
}

/** Options of `startRedisServer`. */
export interface StartRedisServerOptions {
  /** A fixed port; default a random free one. */
  port?: number;
  /** The working directory; default a fresh temp dir, removed by `stop()`. */
  dir?: string;
  /** How long to wait for the server to answer; default 10 s. */
  startTimeoutMs?: number;
}

const HOST = '127.0.0.1';
const EXTRA_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/sbin', '/opt/homebrew/bin'];

/** Finds the `redis-server` binary: `$REDIS_SERVER_BIN`, then `PATH`, then the usual dirs. */
export function findRedisServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env['REDIS_SERVER_BIN'];
  const candidates = [
    ...(explicit ? [explicit] : []),
    ...[...(env['PATH'] ?? '').split(delimiter), ...EXTRA_DIRS]
      .filter((dir) => dir !== '')
      .map((dir) => join(dir, 'redis-server')),
  ];
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here; try the next one
    }
  }
  return undefined;
}

/** Whether a redis-server binary is installed on this machine. */
export const redisAvailable: boolean = findRedisServer() !== undefined;

/**
 * Returns the redis-server path, or undefined when it is missing and tests may
 * skip. Throws when it is missing under `CI=true`: there it is a failure.
 */
export function requireRedisServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const bin = findRedisServer(env);
  if (bin === undefined && env['CI'] === 'true') {
    throw new Error('redis-server is not installed, and CI=true: install it (apt-get install redis-server)');
  }
  return bin;
}

/** Finds a free loopback port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port')),
      );
    });
  });
}

// Children still running when this process exits are killed, so that a
// crashed test run leaves no redis-server behind.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** Asks `INFO server` over raw RESP and returns the answering server's process id, or undefined. */
function probePid(port: number, timeoutMs: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const socket = connect({ host: HOST, port });
    const done = (pid: number | undefined) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('connect', () => socket.write('INFO server\r\n'));
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const match = /process_id:(\d+)/.exec(text);
      if (match?.[1] !== undefined) done(Number(match[1]));
      else if (text.startsWith('-')) done(undefined);
    });
  });
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Spawns one redis-server and waits until it (this very process) answers; rejects with its output if it exits. */
async function spawnRedis(bin: string, port: number, dir: string, timeoutMs: number): Promise<ChildProcess> {
  // biome-ignore format: one flag and its value per line
  const args = [
    '--port', String(port),
    '--bind', HOST,
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'yes',
    '--dir', dir,
    '--daemonize', 'no',
    '--logfile', '',
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  const output: string[] = [];
  const collect = (chunk: Buffer) => {
    output.push(chunk.toString('utf8'));
    if (output.length > 50) output.shift();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`redis-server could not be started: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `redis-server exited (${child.exitCode ?? child.signalCode}):\n${output.join('').trim()}`,
      );
    }
    const pid = await probePid(port, 500);
    if (pid !== undefined && pid === child.pid) return child;
    await sleep(25);
  }
  child.kill('SIGKILL');
  await waitForExit(child);
  throw new Error(
    `redis-server did not answer on port ${port} within ${timeoutMs} ms:\n${output.join('').trim()}`,
  );
}

/**
 * Starts redis-server on 127.0.0.1 (random free port unless given) and waits
 * until it answers. Throws when the binary is missing or the server fails to start.
 */
export async function startRedisServer(opts: StartRedisServerOptions = {}): Promise<RedisServer> {
  const bin = findRedisServer();
  if (bin === undefined) throw new Error('redis-server is not installed (apt-get install redis-server)');
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'redis-test-')));
  const timeoutMs = opts.startTimeoutMs ?? 10_000;

  let child: ChildProcess | undefined;
  let port = opts.port ?? 0;
  // A random port can be taken between probing and binding: try a few.
  for (let attempt = 1; child === undefined; attempt++) {
    if (opts.port === undefined) port = await freePort();
    try {
      child = await spawnRedis(bin, port, dir, timeoutMs);
    } catch (err) {
      if (opts.port !== undefined || attempt >= 3) {
        if (ownsDir) rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const terminate = async (signal: NodeJS.Signals) => {
    const current = child;
    child = undefined;
    if (current === undefined || current.exitCode !== null || current.signalCode !== null) return;
    const exited = waitForExit(current);
    current.kill(signal);
    const timer = setTimeout(() => current.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };

  return {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    get pid() {
      return child?.pid;
    },
    async stop() {
      await terminate('SIGTERM');
      if (ownsDir) rmSync(dir, { recursive: true, force: true });
    },
    async kill() {
      await terminate('SIGKILL');
    },
    async restart() {
      await terminate('SIGTERM');
      mkdirSync(dir, { recursive: true });
      child = await spawnRedis(bin, port, dir, timeoutMs);
    },
  };
}
