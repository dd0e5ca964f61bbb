// "markov": a variable-order Markov model (PPM) of which file a container
// touches next given the last few it touched, learned from the first-touch
// sequences of every trace. Files carry their layer digest, so transitions
// are specific to the layers they were seen in, and workloads sharing layers
// share what was learned of them without any notion of similarity.
//
// The next file's probability blends orders MARKOV_ORDER down to 1 the PPM way
// (method C escapes, with exclusion): the longest context seen decides most,
// each shorter one gets the escape mass left over. Before the container has
// touched anything known, the context is empty and order 0 is the files traces
// started with. When no context (nor start) offers a file that is still open,
// the file most traces touched comes next. Predictions roll out greedily: the
// likeliest next file is taken as if it had been touched, and so on.
import { fileId, registerPredictor, type FileKey, type History, type PredictQuery, type PredictedFile, type Predictor } from "./predictor.js";
import { PredictionList } from "./prediction-list.js";

/** Longest context, in files. */
export const MARKOV_ORDER = 3;
/** Ids take 17 bits each so three of them (plus one) pack exactly into a double: at most this many files are modelled. */
const ID_BITS = 17;
export const MARKOV_MAX_FILES = (1 << ID_BITS) - 2;

type Counts = Map<number, number>;

/** The context key of ids[end-order..end): distinct per order, exact as a double. */
function contextKey(ids: readonly number[], end: number, order: number): number {
  let key = 0;
  for (let i = end - order; i < end; i++) key = key * (1 << ID_BITS) + ((ids[i] as number) + 1);
  return key;
}

const bump = (m: Counts, id: number, by = 1): void => void m.set(id, (m.get(id) ?? 0) + by);

export class MarkovPredictor implements Predictor {
  readonly name = "markov";
  #history: History | undefined;
  #ids = new Map<string, number>();
  #files: FileKey[] = [];
  /** Next-file counts per context (all orders in one map; keys differ by order). */
  #next = new Map<number, Counts>();
  /** How often each file was the first a trace touched. */
  #starts: Counts = new Map();
  /** Files by how many traces touched them (then by mean position), for the last fallback. */
  #popular: number[] = [];
  #popularity = new Float64Array(0);

  constructor(readonly order = MARKOV_ORDER) {}

  async train(history: History): Promise<void> {
    this.#history = history;
    this.#ids = new Map();
    this.#files = [];
    this.#next = new Map();
    this.#starts = new Map();
    const traced: Counts = new Map();
    const posSum: Counts = new Map();
    for (const t of history.traces) {
      const seq: number[] = [];
      for (const f of t.files) {
        const key = fileId(f);
        let id = this.#ids.get(key);
        if (id === undefined) {
          if (this.#files.length >= MARKOV_MAX_FILES) continue;
          this.#ids.set(key, (id = this.#files.length));
          this.#files.push({ layer: f.layer, path: f.path });
        }
        seq.push(id);
      }
      if (seq.length) bump(this.#starts, seq[0] as number);
      seq.forEach((id, i) => {
        bump(traced, id);
        bump(posSum, id, i);
        for (let k = 1; k <= this.order && k <= i; k++) {
          const ctx = contextKey(seq, i, k);
          let m = this.#next.get(ctx);
          if (!m) this.#next.set(ctx, (m = new Map<number, number>()));
          bump(m, id);
        }
      });
    }
    this.#popularity = new Float64Array(this.#files.length);
    for (const [id, n] of traced) this.#popularity[id] = n / Math.max(1, history.traces.length);
    const meanPos = (id: number): number => (posSum.get(id) ?? 0) / (traced.get(id) ?? 1);
    this.#popular = [...traced.keys()].sort((a, b) => (traced.get(b) ?? 0) - (traced.get(a) ?? 0) || meanPos(a) - meanPos(b));
  }

  predict(query: PredictQuery): PredictedFile[] {
    const list = new PredictionList(query, this.#history);
    const allowed = (id: number): boolean => list.open(this.#files[id] as FileKey);
    // the context: the files touched so far that the model knows, then each prediction
    const seq: number[] = [];
    for (const f of query.accessed) {
      const id = this.#ids.get(fileId(f));
      if (id !== undefined) seq.push(id);
    }
    let popularFrom = 0;
    while (!list.full) {
      const best = this.#blend(seq, allowed);
      let id = best?.id;
      let confidence = best?.p ?? 0;
      if (id === undefined) {
        // nothing in any context is left: the most popular file not yet taken
        while (popularFrom < this.#popular.length && !allowed(this.#popular[popularFrom] as number)) popularFrom++;
        id = this.#popular[popularFrom];
        if (id === undefined) break;
        confidence = this.#popularity[id] as number;
      }
      list.offer(this.#files[id] as FileKey, confidence);
      seq.push(id);
    }
    return list.result();
  }

  /** The likeliest next file after `seq` among `allowed` ones, and its blended probability. */
  #blend(seq: readonly number[], allowed: (id: number) => boolean): { id: number; p: number } | undefined {
    const p = new Map<number, number>();
    const seen = new Set<number>(); // exclusion: a file counted at a longer context is not counted again
    let mass = 1;
    for (let k = Math.min(this.order, seq.length); k >= 1 && mass > 0; k--) {
      const counts = this.#next.get(contextKey(seq, seq.length, k));
      if (counts) mass = this.#escape(counts, mass, p, seen, allowed);
    }
    if (seq.length === 0 && mass > 0) mass = this.#escape(this.#starts, mass, p, seen, allowed);
    let best: { id: number; p: number } | undefined;
    for (const [id, q] of p) if (!best || q > best.p) best = { id, p: q };
    return best;
  }

  /** Spreads `mass` over one context's files (PPM method C); returns the escape mass left for shorter contexts. */
  #escape(counts: Counts, mass: number, p: Map<number, number>, seen: Set<number>, allowed: (id: number) => boolean): number {
    let n = 0;
    let distinct = 0;
    for (const [id, c] of counts) {
      if (seen.has(id) || !allowed(id)) continue;
      n += c;
      distinct++;
    }
    if (n === 0) return mass;
    for (const [id, c] of counts) {
      if (seen.has(id) || !allowed(id)) continue;
      seen.add(id);
      p.set(id, (p.get(id) ?? 0) + (mass * c) / (n + distinct));
    }
    return (mass * distinct) / (n + distinct);
  }
}

registerPredictor("markov", () => new MarkovPredictor());
