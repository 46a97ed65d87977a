/** A bounded map that forgets its least recently used entry when full. */
export class Lru<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new RangeError('maxEntries must be a positive integer');
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Returns the value and marks it most recently used. */
  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  /** Stores a value, evicting the least recently used entry when full. */
  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  /** Deletes every entry whose key and value match `predicate`; returns how many. */
  deleteWhere(predicate: (key: K, value: V) => boolean): number {
    let n = 0;
    for (const [k, v] of this.#map) {
      if (predicate(k, v)) {
        this.#map.delete(k);
        n++;
      }
    }
    return n;
  }
}
