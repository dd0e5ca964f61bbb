// First contact with a plain layer streams the whole blob before anything of
// it can be served (nothing can be verified sooner). When the node knows what
// the image's workloads read (the prefetcher ranks the layers by their first
// predicted read), the streams go one at a time in that order, so the layers
// read first are whole first, and layers the workload does not read at all
// wait for the rest: a data script on the python image that never touches the
// toolchain layer can start before that layer has streamed. Without a
// ranking, every stream starts at once, as they always did.

/** The rank of a layer in the order the predicted workload reads layers, or undefined when it is not known to be read. */
export type LayerRank = (layer: string) => number | undefined;

interface Waiting {
  layer: string;
  rank: number | undefined;
  start: () => void;
}

export class StreamOrder {
  readonly #rank: LayerRank;
  readonly #waiting: Waiting[] = [];
  #rankedRunning = 0;
  #running = 0;

  constructor(rank: LayerRank = () => undefined) {
    this.#rank = rank;
  }

  /** Waits for `layer`'s turn to stream; the returned function ends its turn (call it once, however the stream ends). */
  async turn(layer: string): Promise<() => void> {
    const rank = this.#rank(layer);
    await new Promise<void>((start) => {
      this.#waiting.push({ layer, rank, start });
      this.#next();
    });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#running--;
      if (rank !== undefined) this.#rankedRunning--;
      this.#next();
    };
  }

  /** Layers waiting for their turn, first to go first. */
  get waiting(): string[] {
    return this.#order().map((w) => w.layer);
  }

  #order(): Waiting[] {
    return [...this.#waiting].sort((a, b) => (a.rank ?? Infinity) - (b.rank ?? Infinity));
  }

  #next(): void {
    for (;;) {
      const ordered = this.#order();
      const anyRanked = this.#rankedRunning > 0 || ordered.some((w) => w.rank !== undefined);
      const w = ordered[0];
      if (!w) return;
      // with a ranking: one ranked stream at a time, unranked ones after all ranked; without: all at once
      if (anyRanked && (this.#rankedRunning > 0 || (w.rank === undefined && this.#running > 0))) return;
      this.#waiting.splice(this.#waiting.indexOf(w), 1);
      this.#running++;
      if (w.rank !== undefined) this.#rankedRunning++;
      w.start();
    }
  }
}
