// Keeps a predictor trained on this node's traces: at start, and again (in
// the background, coalesced) whenever a trace ends. Traces are kept in memory
// compacted (per file its first touch and its merged reads: what the
// predictors learn from), so retraining does not re-read every trace file.
import { errorMessage } from "../errdefs/errors.js";
import type { AccessRecord, Trace } from "../trace/trace-format.js";
import { logger } from "../util/logging.js";
import { mergeRanges, TraceHistory } from "./history.js";
import { createPredictor, fileId, type History, type LayerCatalog, type Predictor, type Range } from "./predictor.js";

const log = logger("predict");

/** Where the traces come from (trace/trace-store.ts). */
export interface TraceSource {
  list(): readonly { id: string; header: { started: number } }[];
  read(id: string): Trace;
}

/** A trace reduced to what predictors use: first touches in order, merged reads per file. */
export function compactTrace(t: Trace): Trace {
  const first = new Map<string, AccessRecord>();
  const reads = new Map<string, { layer: string; path: string; t: number; ranges: Range[] }>();
  for (const a of t.accesses) {
    if (a.op !== "open" && a.op !== "read") continue;
    const id = fileId(a);
    const seen = first.get(id);
    if (!seen || (seen.op === "read" && a.op === "open")) {
      first.set(id, { kind: "access", t: seen ? Math.min(seen.t, a.t) : a.t, op: "open", layer: a.layer, path: a.path, ...(a.size !== undefined ? { size: a.size } : {}) });
    }
    if (a.op === "read" && a.length) {
      let r = reads.get(id);
      if (!r) reads.set(id, (r = { layer: a.layer, path: a.path, t: a.t, ranges: [] }));
      r.ranges.push({ offset: a.offset ?? 0, length: a.length });
    }
  }
  const accesses: AccessRecord[] = [...first.values()].sort((a, b) => a.t - b.t);
  for (const r of reads.values()) {
    for (const m of mergeRanges(r.ranges)) accesses.push({ kind: "access", t: r.t, op: "read", layer: r.layer, path: r.path, offset: m.offset, length: m.length });
  }
  return { ...t, accesses, skippedLines: 0 };
}

export interface LearnerOptions {
  traces: TraceSource;
  /** Registered predictor name (predictors.ts). */
  predictor: string;
  /** Where the predictor may keep a model. */
  stateDir?: string;
  catalog?: LayerCatalog;
  /** More traces to learn from than the node's own: the profiles of loaded cluster manifests. */
  extraTraces?: () => readonly Trace[];
}

export class Learner {
  readonly name: string;
  readonly #opts: LearnerOptions;
  readonly #compacted = new Map<string, Trace>();
  #predictor: Predictor;
  #history: History;
  #training: Promise<void> | undefined;
  #again = false;
  /** How long the last training took, and on how many traces. */
  lastTraining: { ms: number; traces: number; at: number } | undefined;

  constructor(opts: LearnerOptions) {
    this.#opts = opts;
    this.name = opts.predictor;
    this.#predictor = createPredictor(opts.predictor, { ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), background: true });
    this.#history = new TraceHistory([], opts.catalog);
  }

  /** The predictor as last trained (untrained until the first training ends). */
  get predictor(): Predictor {
    return this.#predictor;
  }

  get history(): History {
    return this.#history;
  }

  /** Trains on the current traces; a call while training runs once more afterwards. */
  retrain(): Promise<void> {
    if (this.#training) {
      this.#again = true;
      return this.#training;
    }
    this.#training = (async () => {
      do {
        this.#again = false;
        await this.#trainOnce();
      } while (this.#again);
    })().finally(() => (this.#training = undefined));
    return this.#training;
  }

  async #trainOnce(): Promise<void> {
    const started = performance.now();
    const listed = this.#opts.traces.list();
    const live = new Set(listed.map((f) => f.id));
    for (const id of this.#compacted.keys()) if (!live.has(id)) this.#compacted.delete(id);
    const traces: Trace[] = [];
    for (const f of listed) {
      let t = this.#compacted.get(f.id);
      if (!t) {
        try {
          const full = this.#opts.traces.read(f.id);
          t = compactTrace(full);
          if (full.end) this.#compacted.set(f.id, t); // a trace still being written is read again next time
        } catch (err) {
          log.warn("cannot read trace; learning without it", { trace: f.id, error: errorMessage(err) });
          continue;
        }
      }
      traces.push(t);
    }
    traces.push(...(this.#opts.extraTraces?.() ?? []));
    const history = new TraceHistory(traces, this.#opts.catalog);
    const next = createPredictor(this.#opts.predictor, { ...(this.#opts.stateDir ? { stateDir: this.#opts.stateDir } : {}), background: true });
    try {
      await next.train(history);
    } catch (err) {
      log.warn("training failed; keeping the last predictor", { predictor: this.name, error: errorMessage(err) });
      return;
    }
    this.#predictor = next;
    this.#history = history;
    this.lastTraining = { ms: Math.round(performance.now() - started), traces: traces.length, at: Date.now() };
    log.debug("predictor trained", { predictor: this.name, traces: traces.length, ms: this.lastTraining.ms });
  }
}
