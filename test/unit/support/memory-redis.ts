import type { RedisSeam } from '../../../shared/cache/shared-cache.js';

/**
 * An in-memory Redis for unit tests of the shared cache's logic: MGET, SET
 * with PX/NX, INCR, and the one Lua script the cache uses (compare-and-delete).
 * Integration tests run the same code against a real redis-server.
 */
export class MemoryRedis implements RedisSeam {
  readonly data = new Map<string, { value: string; expiresAt: number | undefined }>();
  down = false;
  delayMs = 0;
  calls = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async #enter(): Promise<void> {
    this.calls++;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.down) throw new Error('ECONNREFUSED');
  }

  #get(key: string): string | null {
    const e = this.data.get(key);
    if (!e) return null;
    if (e.expiresAt !== undefined && e.expiresAt <= this.now()) {
      this.data.delete(key);
      return null;
    }
    return e.value;
  }

  async mget(...keys: string[]): Promise<unknown[]> {
    await this.#enter();
    return keys.map((k) => this.#get(k));
  }

  async set(key: string, value: string, options: { px: number; nx?: true }): Promise<unknown> {
    await this.#enter();
    if (options.nx && this.#get(key) !== null) return null;
    this.data.set(key, { value, expiresAt: this.now() + options.px });
    return 'OK';
  }

  async incr(key: string): Promise<number> {
    await this.#enter();
    const n = Number(this.#get(key) ?? 0) + 1;
    this.data.set(key, { value: String(n), expiresAt: undefined });
    return n;
  }

  async eval(script: string, keys: string[], args: string[]): Promise<unknown> {
    await this.#enter();
    if (!script.includes("redis.call('DEL'")) throw new Error('unsupported script');
    if (this.#get(keys[0]!) === args[0]) {
      this.data.delete(keys[0]!);
      return 1;
    }
    return 0;
  }
}
