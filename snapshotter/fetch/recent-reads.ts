// A small memory of recent reads, by (offset, length): who answered a read,
// so bytes that fail their check can be blamed on their source. Bounded:
// the oldest reads are forgotten (a check follows its read at once).
const REMEMBERED = 256;

export class RecentReads<T> {
  readonly #map = new Map<string, T>();

  set(offset: number, length: number, value: T): void {
    const key = `${offset}:${length}`;
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > REMEMBERED) this.#map.delete(this.#map.keys().next().value as string);
  }

  /** The value for the read, forgotten as it is returned. */
  take(offset: number, length: number): T | undefined {
    const key = `${offset}:${length}`;
    const v = this.#map.get(key);
    this.#map.delete(key);
    return v;
  }

  delete(offset: number, length: number): void {
    this.#map.delete(`${offset}:${length}`);
  }
}
