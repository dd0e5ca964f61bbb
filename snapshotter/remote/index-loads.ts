// Loading a cached layer index (parse, then build its directory tree) is
// 25-75 ms of CPU on the thread that answers containerd and FUSE. At an
// image's first Prepare every layer with a cached index opens (the layer
// being prepared, and the others early, remote-layers.ts); run side by side,
// the three loads of the python image kept the loop busy for ~250 ms, every
// layer was ready only at the end of it, the predicted files waited for them,
// and containerd's next Stat and Prepare waited behind them. So loads take
// turns: the layer a Prepare is waiting for first, then the others in the
// order the predicted workload reads them (the ranking StreamOrder uses),
// each yielding to the event loop between its steps, so the first layer's
// predicted files are on their way while the next loads.
import type { LayerRank } from "./stream-order.js";

interface Waiting {
  layer: string;
  /** -1: a Prepare waits for it; else the layer's rank (Infinity: not predicted to be read). */
  key: number;
  start: () => void;
}

export class IndexLoads {
  readonly #rank: LayerRank;
  readonly #waiting: Waiting[] = [];
  #running = false;

  constructor(rank: LayerRank = () => undefined) {
    this.#rank = rank;
  }

  /**
   * Waits for `layer`'s turn to load; `urgent`: a Prepare waits for it. The
   * returned function ends the turn (call it once, however the load ends).
   */
  async turn(layer: string, urgent: boolean): Promise<() => void> {
    const key = urgent ? -1 : (this.#rank(layer) ?? Infinity);
    await new Promise<void>((start) => {
      this.#waiting.push({ layer, key, start });
      this.#next();
    });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#running = false;
      this.#next();
    };
  }

  /** A Prepare came for `layer`, whose load was queued early: it goes next. */
  hurry(layer: string): void {
    for (const w of this.#waiting) if (w.layer === layer) w.key = -1;
  }

  /** Layers waiting for their turn, first to go first. */
  get waiting(): string[] {
    return this.#order().map((w) => w.layer);
  }

  #order(): Waiting[] {
    return [...this.#waiting].sort((a, b) => (a.key === b.key ? 0 : a.key - b.key)); // ties: first come first
  }

  #next(): void {
    if (this.#running) return;
    const w = this.#order()[0];
    if (!w) return;
    this.#waiting.splice(this.#waiting.indexOf(w), 1);
    this.#running = true;
    w.start();
  }
}

/** Lets I/O that came meanwhile (containerd's next call, a FUSE request) run before the next step. */
export const yieldToLoop = (): Promise<void> => new Promise((ok) => setImmediate(ok));
