/**
 * A local stand-in for Upstash Redis's REST API in front of a real
 * redis-server, compatible with the real `@upstash/redis` client:
 *
 * - `POST /` with `["SET","k","v","PX",1000]` → `{ "result": ... }`, or HTTP 400 `{ "error": "ERR ..." }`
 * - `POST /pipeline` with `[[...],[...]]` → `[{ "result": ... } | { "error": ... }, ...]`
 * - `POST /multi-exec` the same, run as one MULTI/EXEC transaction
 * - `GET|POST /get/key?opt=val` path-style commands (a POST body is the last argument)
 * - `Authorization: Bearer <token>` (or `?_token=`), else 401 `{ "error": "Unauthorized" }`
 * - `Upstash-Encoding: base64`: every string in a result is base64 of its bytes
 * - Redis down → 503 `{ error }` at once; it reconnects by itself.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisForwarder } from './forwarder.js';
import { type Answer, type Json, parseCommand, parseCommands, RestError } from './wire.js';

/** Options of `startUpstashStandIn`. */
export interface UpstashStandInOptions {
  /** e.g. `redis://127.0.0.1:6379` */
  redisUrl: string;
  /** The bearer token clients must send. */
  token: string;
  /** Default 0: a random free port. */
  port?: number;
  /** Default `127.0.0.1`. */
  host?: string;
  /** A Redis command with no answer after this long is a 503; default 2000 ms. */
  commandTimeoutMs?: number;
  /** Larger request bodies are refused with 413; default 10 MiB. */
  maxBodyBytes?: number;
  /** How long `startUpstashStandIn` waits for the first Redis connection; default 5000 ms. It starts anyway. */
  connectWaitMs?: number;
  /** Connection state changes; default silent. */
  log?: (line: string) => void;
}

/** Counters for tests. */
export interface UpstashStandInStats {
  /** HTTP requests received. */
  readonly requests: number;
  /** Redis commands forwarded (each command of a pipeline or transaction counts). */
  readonly commands: number;
  /** TCP connections accepted: with keep-alive clients, far fewer than requests. */
  readonly connections: number;
}

/** A running stand-in. */
export interface UpstashStandIn {
  /** `http://host:port`, for `new Redis({ url, token })`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly stats: UpstashStandInStats;
  /** Whether the connection to redis-server is up. */
  readonly redisReady: boolean;
  /** Delays every answer by `ms` (0 to stop). */
  setDelay(ms: number): void;
  /** While true, every request is answered 503 without touching Redis. */
  setFailing(failing: boolean): void;
  /** Sets the counters back to 0. */
  resetStats(): void;
  /** Closes the HTTP server, its connections and the Redis connection. */
  close(): Promise<void>;
}

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

function send(res: ServerResponse, status: number, body: Json | Answer | Answer[]): void {
  if (res.destroyed || res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > maxBytes) throw new RestError(413, 'ERR request body too large');
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new RestError(400, 'ERR failed to parse the request body as JSON');
  }
}

/** The command of a path-style request: `/set/key/value?EX=100` → `["set","key","value","EX","100"]`. */
function pathCommand(url: URL, method: string, body: Buffer): string[] {
  let segments: string[];
  try {
    segments = url.pathname
      .slice(1)
      .split('/')
      .map((segment) => decodeURIComponent(segment));
  } catch {
    throw new RestError(400, 'ERR malformed path');
  }
  while (segments.length > 0 && segments.at(-1) === '') segments.pop();
  // `POST /set/key?EX=100` with a body is `SET key <body> EX 100`.
  if (method === 'POST' && body.length > 0) segments.push(body.toString('utf8'));
  for (const [key, value] of url.searchParams) {
    if (key === '_token') continue;
    segments.push(key);
    if (value !== '') segments.push(value);
  }
  return parseCommand(segments);
}

/**
 * Starts the stand-in on `host:port` (default 127.0.0.1, random port) in
 * front of `redisUrl`. Resolves once it listens; if Redis is not up within
 * `connectWaitMs` it still starts, answering 503 until Redis comes up.
 */
export async function startUpstashStandIn(opts: UpstashStandInOptions): Promise<UpstashStandIn> {
  if (opts.token === '') throw new Error('startUpstashStandIn: token must not be empty');
  const host = opts.host ?? '127.0.0.1';
  const maxBodyBytes = opts.maxBodyBytes ?? 10 * 1024 * 1024;
  const tokenDigest = digest(opts.token);
  const forwarder = new RedisForwarder({
    redisUrl: opts.redisUrl,
    ...(opts.commandTimeoutMs === undefined ? {} : { commandTimeoutMs: opts.commandTimeoutMs }),
    ...(opts.log === undefined ? {} : { log: opts.log }),
  });
  const closing = new AbortController();
  let delayMs = 0;
  let failing = false;
  let requests = 0;

  const authorized = (req: IncomingMessage, url: URL): boolean => {
    const header = req.headers.authorization;
    let presented: string | undefined;
    if (header !== undefined) {
      const match = /^Bearer\s+(.+)$/i.exec(header.trim());
      presented = match?.[1];
    } else {
      presented = url.searchParams.get('_token') ?? undefined;
    }
    // Hashing first makes the comparison constant-time whatever the lengths.
    return presented !== undefined && timingSafeEqual(digest(presented), tokenDigest);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    requests += 1;
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const body = await readBody(req, maxBodyBytes);
    if (delayMs > 0) await sleep(delayMs, undefined, { signal: closing.signal });
    if (failing) throw new RestError(503, 'ERR service unavailable (injected failure)');
    if (!authorized(req, url)) throw new RestError(401, 'Unauthorized');

    const format = req.headers['upstash-response-format'];
    if (format !== undefined && format !== 'json') {
      throw new RestError(400, 'ERR only the json response format is supported by this stand-in');
    }
    const base64 = String(req.headers['upstash-encoding'] ?? '').toLowerCase() === 'base64';
    const path = url.pathname;

    if (path === '/' || path === '/pipeline' || path === '/multi-exec') {
      if (method !== 'POST') throw new RestError(405, 'ERR method not allowed');
      const parsed = parseJson(body);
      if (path === '/pipeline')
        return send(res, 200, await forwarder.pipeline(parseCommands(parsed), base64));
      if (path === '/multi-exec')
        return send(res, 200, await forwarder.multiExec(parseCommands(parsed), base64));
      const answer = await forwarder.run(parseCommand(parsed), base64);
      return send(res, 'error' in answer ? 400 : 200, answer);
    }
    if (method !== 'GET' && method !== 'POST') throw new RestError(405, 'ERR method not allowed');
    const answer = await forwarder.run(pathCommand(url, method, body), base64);
    return send(res, 'error' in answer ? 400 : 200, answer);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (closing.signal.aborted) {
        res.destroy();
        return;
      }
      if (err instanceof RestError) return send(res, err.status, { error: err.message });
      opts.log?.(`upstash stand-in: internal error: ${err instanceof Error ? err.message : String(err)}`);
      send(res, 500, { error: 'ERR internal error in the stand-in' });
    });
  });

  let connections = 0;
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await forwarder.waitReady(opts.connectWaitMs ?? 5_000);
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    host,
    port,
    stats: {
      get requests() {
        return requests;
      },
      get commands() {
        return forwarder.commands;
      },
      get connections() {
        return connections;
      },
    },
    get redisReady() {
      return forwarder.ready;
    },
    setDelay(ms: number) {
      delayMs = Math.max(0, ms);
    },
    setFailing(value: boolean) {
      failing = value;
    },
    resetStats() {
      requests = 0;
      connections = 0;
      forwarder.commands = 0;
    },
    async close() {
      closing.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      forwarder.close();
    },
  };
}
