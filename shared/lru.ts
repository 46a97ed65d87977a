interface Slot<V> {
  value: V;
  /** Set by a read or a rewrite; the eviction sweep clears it once before it evicts. */
  used: boolean;
}

/**
 * A bounded map that forgets a least recently used entry when full. It is
 * the CLOCK (second chance) approximation of LRU: a read only sets a flag,
 * where a strict LRU would reorder the map, which costs a delete and an
 * insert on every cache hit. When full, the oldest entry not read since the
 * last sweep goes.
 */
export class Lru<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, Slot<V>>();

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new RangeError('maxEntries must be a positive integer');
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Returns the value and marks it recently used. */
  get(key: K): V | undefined {
    const slot = this.#map.get(key);
    if (slot === undefined) return undefined;
    slot.used = true;
    return slot.value;
  }

  /** Stores a value, evicting a least recently used entry when full. */
  set(key: K, value: V): void {
    const slot = this.#map.get(key);
    if (slot !== undefined) {
      slot.value = value;
      slot.used = true;
      return;
    }
    if (this.#map.size >= this.#max) this.#evict(); // before the insert, so the new entry stays
    this.#map.set(key, { value, used: false });
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
    for (const [k, slot] of this.#map) {
      if (predicate(k, slot.value)) {
        this.#map.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Sweeps from the oldest entry: a used one gets a second chance at the back, the first unused one goes. */
  #evict(): void {
    for (const [k, slot] of this.#map) {
      this.#map.delete(k);
      if (!slot.used) return;
      slot.used = false;
      this.#map.set(k, slot); // visited again by this loop, and unused then
    }
  }
}
