// Where containers began reading each lazily served layer, kept until a
// container ends; then, one layer at a time in the background, access points
// are added there to the layer's cached index (LayerOpener.refineIndex), so
// the next node or run that opens the layer by range fetches from just before
// each file instead of from the last 512 KiB mark.
import { errorMessage } from "../errdefs/errors.js";
import { ReadStartLog, type ReadStart } from "../layer/access-points.js";
import { logger } from "../util/logging.js";
import type { Refinement } from "./layer-opener.js";

const log = logger("remote");

/** Read starts kept per layer until the next refinement (what a big start-up makes is a few thousand). */
const MAX_STARTS_PER_LAYER = 16384;

export type RefineFn = (digest: string, reads: readonly ReadStart[], signal: AbortSignal) => Promise<Refinement>;

export interface RefinerStatus {
  rounds: number;
  added: number;
  running: boolean;
  /** layers with reads waiting for the next round */
  pending: number;
}

export class IndexRefiner {
  readonly #layers = new Map<string, ReadStartLog>();
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;
  readonly #abort = new AbortController();
  #rounds = 0;
  #added = 0;

  constructor(private readonly refine: RefineFn) {}

  /** An entry a container looked up (it may only stat it): its header is where a node checking the index reads. */
  lookup(layer: string, path: string): void {
    this.#log(layer).lookup(path);
  }

  /** A read a container made of `layer` (from the tracer). */
  read(layer: string, path: string, offset: number, length: number): void {
    this.#log(layer).read(path, offset, length);
  }

  /** The layer's starts since the last round (full until the next round). */
  #log(layer: string): ReadStartLog {
    let l = this.#layers.get(layer);
    if (!l) this.#layers.set(layer, (l = new ReadStartLog(MAX_STARTS_PER_LAYER)));
    return l;
  }

  /** A container ended: refine the layers read since the last round (one round at a time). */
  containerEnded(): void {
    if (this.#closed || this.#layers.size === 0) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#round().finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.containerEnded();
      }
    });
  }

  status(): RefinerStatus {
    return { rounds: this.#rounds, added: this.#added, running: this.#running !== undefined, pending: this.#layers.size };
  }

  /** augur is stopping: the running round stops where it is (the old index stays), no new one starts. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    await this.#running;
  }

  async #round(): Promise<void> {
    const layers = [...this.#layers.entries()];
    this.#layers.clear();
    const started = Date.now();
    let added = 0;
    for (const [digest, reads] of layers) {
      if (this.#closed) break;
      try {
        const r = await this.refine(digest, reads.starts, this.#abort.signal);
        added += r.added;
        if (r.added > 0) log.info("access points added to the layer index where containers began reading", { layer: digest, added: r.added, spans: r.spans });
        else log.debug("layer index left as it is", { layer: digest, why: r.why ?? "nothing to add" });
      } catch (err) {
        if (this.#closed) break;
        log.warn("could not add access points to the layer index; it stays as it was", { layer: digest, error: errorMessage(err) });
      }
    }
    this.#rounds++;
    this.#added += added;
    log.debug("index refinement round done", { layers: layers.length, added, ms: Date.now() - started });
  }
}
