/**
 * Upstash accepts Lua shebang flags that redis-server rejects
 * (`@upstash/ratelimit` starts every script with `#!lua flags=allow-key-locking`,
 * and Redis 7 answers "ERR Unexpected flag in script shebang"). The stand-in
 * drops such flags before a script reaches Redis, and remembers which SHA1
 * the rewritten script has, so that EVALSHA with the SHA1 the client computed
 * over the original text still finds it.
 */
import { createHash } from 'node:crypto';

// https://redis.io/docs/latest/develop/programmability/lua-api/#script-flags
const REDIS_FLAGS = new Set(['no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys']);
const MAX_REMEMBERED = 10_000;

/** Lower-case hex SHA1 of a script's UTF-8 bytes, as Redis computes it. */
export function scriptSha(script: string): string {
  return createHash('sha1').update(script, 'utf8').digest('hex');
}

/** Returns the script with the shebang flags that Redis does not know removed; unchanged when there are none. */
export function toRedisScript(script: string): string {
  if (!script.startsWith('#!')) return script;
  const newline = script.indexOf('\n');
  let line = newline === -1 ? script : script.slice(0, newline);
  const rest = newline === -1 ? '' : script.slice(newline);
  const cr = line.endsWith('\r') ? '\r' : '';
  if (cr) line = line.slice(0, -1);
  let changed = false;
  const parts = line.split(' ').map((part) => {
    if (!part.startsWith('flags=')) return part;
    const flags = part.slice('flags='.length).split(',');
    const known = flags.filter((flag) => REDIS_FLAGS.has(flag));
    if (known.length === flags.filter((flag) => flag !== '').length) return part;
    changed = true;
    return `flags=${known.join(',')}`;
  });
  return changed ? `${parts.join(' ')}${cr}${rest}` : script;
}

/** Maps the SHA1 a client computed over a script to the SHA1 of the script Redis really holds. */
export class ScriptShaMap {
  readonly #toRedis = new Map<string, string>();

  /** Rewrites a script for Redis and remembers the SHA mapping; returns the script to send. */
  prepare(script: string): string {
    const rewritten = toRedisScript(script);
    if (rewritten !== script) {
      if (this.#toRedis.size >= MAX_REMEMBERED) this.#toRedis.clear();
      this.#toRedis.set(scriptSha(script), scriptSha(rewritten));
    }
    return rewritten;
  }

  /** The SHA1 to send to Redis for a SHA1 the client sent. */
  translate(sha: string): string {
    return this.#toRedis.get(sha.toLowerCase()) ?? sha;
  }
}
