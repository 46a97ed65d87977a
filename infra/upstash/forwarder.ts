/**
 * Forwards commands to redis-server over one ioredis connection, binary-safe
 * (`callBuffer`), failing fast while Redis is down (no offline queue, no
 * retries per request) and reconnecting by itself when it comes back.
 */
import { Redis } from 'ioredis';
import { ScriptShaMap, scriptSha } from './lua-flags.js';
import { type Answer, encodeReply, RestError } from './wire.js';

/** Where Redis is and how long to wait for it. */
export interface ForwarderOptions {
  redisUrl: string;
  /** A command with no answer after this long fails (the stand-in answers 503); default 2000 ms. */
  commandTimeoutMs?: number;
  /** Connection state changes; default silent. */
  log?: (line: string) => void;
}

// Commands that would change the shared connection's state, or block it.
const REFUSED = new Set([
  'multi',
  'exec',
  'discard',
  'watch',
  'unwatch',
  'select',
  'swapdb',
  'subscribe',
  'psubscribe',
  'ssubscribe',
  'unsubscribe',
  'punsubscribe',
  'sunsubscribe',
  'monitor',
  'quit',
  'reset',
  'hello',
  'auth',
  'client',
  'wait',
  'waitaof',
  'blpop',
  'brpop',
  'brpoplpush',
  'blmove',
  'blmpop',
  'bzpopmin',
  'bzpopmax',
  'bzmpop',
  'shutdown',
  'debug',
]);

/** What to send to Redis for one command and how to fix its reply up, or why it is refused. */
type Prepared = { args: string[]; fixReply?: (reply: unknown) => unknown } | { refused: string };

// ioredis reshapes some replies (HGETALL into an object, ZRANGE WITHSCORES into
// pairs, ...) by looking the lower-case command name up in a table; Redis
// itself does not care about case, so an upper-case name keeps the raw reply.
const rawName = (name: string) => name.toUpperCase();

function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ReplyError';
}

/** Redis could not be reached; the stand-in answers 503. */
export class RedisUnavailable extends RestError {
  constructor(cause: unknown) {
    super(503, 'ERR redis-server is unavailable');
    this.cause = cause;
  }
}

/** One connection to redis-server that runs REST commands, pipelines and transactions. */
export class RedisForwarder {
  readonly #redis: Redis;
  readonly #scripts = new ScriptShaMap();
  /** Commands sent to Redis so far (each command of a pipeline or transaction counts). */
  commands = 0;

  constructor(opts: ForwarderOptions) {
    const log = opts.log ?? (() => {});
    this.#redis = new Redis(opts.redisUrl, {
      protocol: 2,
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: opts.commandTimeoutMs ?? 2_000,
      connectTimeout: 2_000,
      retryStrategy: (times) => Math.min(times * 50, 500),
    });
    let wasReady = false;
    this.#redis.on('ready', () => {
      wasReady = true;
      log('upstash stand-in: connected to redis');
    });
    this.#redis.on('error', (err: Error) => {
      if (wasReady) log(`upstash stand-in: redis connection error: ${err.message}`);
      wasReady = false;
    });
  }

  /** Whether the connection is up. */
  get ready(): boolean {
    return this.#redis.status === 'ready';
  }

  /** Waits until the connection is up, at most `timeoutMs`; resolves false when it is not. */
  async waitReady(timeoutMs: number): Promise<boolean> {
    if (this.ready) return true;
    return new Promise((resolve) => {
      const onReady = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#redis.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      this.#redis.once('ready', onReady);
    });
  }

  /** Runs one command; a Redis error reply or a refused command is `{ error }`. Throws RedisUnavailable when Redis is down. */
  async run(command: string[], base64: boolean): Promise<Answer> {
    const [answer] = await this.pipeline([command], base64);
    return answer ?? { error: 'ERR no reply' };
  }

  /** Runs commands in order on the connection (not atomic). Throws like `run`. */
  async pipeline(commands: string[][], base64: boolean): Promise<Answer[]> {
    const prepared = commands.map((command) => this.#prepare(command));
    // ioredis writes them in call order on the one connection.
    const settled = await Promise.allSettled(prepared.map((p) => this.#send(p, base64)));
    return settled.map((outcome) => {
      if (outcome.status === 'rejected') throw new RedisUnavailable(outcome.reason);
      return outcome.value;
    });
  }

  /**
   * Runs commands as one MULTI/EXEC transaction. A command that fails at run
   * time is an `{ error }` entry; one that Redis refuses to queue aborts the
   * whole transaction (RestError 400, EXECABORT). Throws RedisUnavailable when Redis is down.
   */
  async multiExec(commands: string[][], base64: boolean): Promise<Answer[]> {
    const prepared = commands.map((command) => this.#prepare(command));
    const sendable: Exclude<Prepared, { refused: string }>[] = [];
    for (const p of prepared) {
      if ('refused' in p) throw new RestError(400, `EXECABORT Transaction discarded: ${p.refused}`);
      sendable.push(p);
    }
    const transaction = this.#redis.multi();
    for (const { args } of sendable) {
      const [name = '', ...rest] = args;
      transaction.callBuffer(rawName(name), ...rest);
    }
    this.commands += sendable.length;
    let results: [error: Error | null, result: unknown][] | null;
    try {
      results = await transaction.exec();
    } catch (err) {
      if (isReplyError(err)) {
        const previous = (err as Error & { previousErrors?: unknown }).previousErrors;
        const first =
          Array.isArray(previous) && previous[0] instanceof Error ? `: ${previous[0].message}` : '';
        throw new RestError(400, `${err.message}${first}`);
      }
      throw new RedisUnavailable(err);
    }
    if (results === null) throw new RestError(400, 'ERR transaction aborted');
    return results.map(([error, result], i) => {
      if (error) return { error: error.message };
      const fix = sendable[i]?.fixReply;
      return { result: encodeReply(fix ? fix(result) : result, base64) };
    });
  }

  /** Closes the connection at once. */
  close(): void {
    this.#redis.disconnect(false);
  }

  async #send(p: Prepared, base64: boolean): Promise<Answer> {
    if ('refused' in p) return { error: p.refused };
    this.commands += 1;
    const [name = '', ...rest] = p.args;
    try {
      const reply: unknown = await this.#redis.callBuffer(rawName(name), ...rest);
      return { result: encodeReply(p.fixReply ? p.fixReply(reply) : reply, base64) };
    } catch (err) {
      if (isReplyError(err)) return { error: err.message };
      throw err;
    }
  }

  #prepare(command: string[]): Prepared {
    const [name = '', ...args] = command;
    const lower = name.toLowerCase();
    if (REFUSED.has(lower)) return { refused: `ERR Command is not available: '${lower}'` };
    if ((lower === 'eval' || lower === 'eval_ro') && args[0] !== undefined) {
      return { args: [name, this.#scripts.prepare(args[0]), ...args.slice(1)] };
    }
    if ((lower === 'evalsha' || lower === 'evalsha_ro') && args[0] !== undefined) {
      return { args: [name, this.#scripts.translate(args[0]), ...args.slice(1)] };
    }
    if (lower === 'script') {
      const sub = args[0]?.toLowerCase();
      if (sub === 'load' && args[1] !== undefined) {
        const original = args[1];
        // The client expects the SHA1 of the text it sent, not of the rewritten one.
        return {
          args: [name, args[0] ?? '', this.#scripts.prepare(original)],
          fixReply: () => Buffer.from(scriptSha(original)),
        };
      }
      if (sub === 'exists') {
        return { args: [name, args[0] ?? '', ...args.slice(1).map((sha) => this.#scripts.translate(sha))] };
      }
    }
    return { args: command };
  }
}
