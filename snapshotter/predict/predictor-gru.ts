// "gru": a recurrent network over first-touch file sequences. Each trace is a
// sentence whose words are files; the network learns which file follows the
// ones touched so far and, after a container's accesses, rolls out the files
// it expects next, greedily, one at a time.
//
// The model: embedding 32 -> GRU 64 -> softmax over the vocabulary (the files
// most traces touched, at most 4096), trained in-process with truncated BPTT
// and Adam (gru-training.ts), bounded by epochs and milliseconds. Predictions
// are a greedy rollout restricted to the query's layers, never an accessed or
// already predicted file. Each container asks again after every access, so
// the state after its accesses and the rollout from it are cached: when it
// touches the file predicted first, the rest of the rollout stands unchanged
// (exactly: same state, same exclusions) and the query costs one step.
//
// Why typed arrays, not @tensorflow/tfjs: measured on this 2-core VM (Node
// 20, no tfjs-node; the machine was shared, so ranges are given), same
// synthetic data (24 sequences × 400 first touches, 8 workloads, vocabulary
// 2051), same model size (217,635 weights, 870 KB), Adam lr 0.01:
//   training, per epoch (9,600 tokens)
//     typed arrays (32-step TBPTT chunks, batch 1)    5.8-10 s    (0.7-1.0 ms/token)
//     tfjs 4.22 cpu, layers API, 32-token windows
//       batch 1                                       350-402 s   (36-42 ms/token)
//       batch 32                                      196-202 s   (20-21 ms/token)
//   prediction, 50-token prefix + 20-file greedy rollout, nothing cached
//     typed arrays                                    5.9-7.9 ms median, 8.5-16 ms p95
//     tfjs layers API (stateful, predict() per step)  1,053 ms median, 1,173 ms p95
//     tfjs core ops (hand-written GRU step)           28 ms median, 50 ms p95
//   prediction in online use (a query after every access, 1,591 queries,
//   limit 20, state and rollout cache): 0.21-0.36 ms median, 3.9-5.7 ms p95
// tfjs's pure-JS backend pays per-op dispatch and allocation that dwarf a
// 64-wide matrix-vector product, so the typed-array version is 20-50x faster
// to train and 5-200x faster to predict; it is the one used. The unrolled
// dot products (gru-network.ts) keep the 2051 × 64 output layer at ~0.1 ms
// a step in JavaScript; a rollout scores it in WebAssembly SIMD instead
// (gru-output.ts: 0.03 ms for 4096 rows against 0.30 ms), which took the
// evaluation's p95 from 5.2-7.7 ms to 3.9 ms (docs/prediction.md).
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { GruNetwork, seededRandom, type GruShape } from "./gru-network.js";
import { loadGru, saveGru } from "./gru-model-file.js";
import { OutputLayer } from "./gru-output.js";
import { DEFAULT_TRAINING, trainGru, type GruTrainingOptions, type TrainingReport, type TrainingSequence } from "./gru-training.js";
import { fileId, registerPredictor, type FileKey, type History, type PredictQuery, type PredictedFile, type Predictor, type PredictorOptions } from "./predictor.js";
import { PredictionList } from "./prediction-list.js";

/** Input tokens: BOS starts every sequence, UNK stands for a file outside the vocabulary; file i is FIRST_FILE + i. */
export const BOS = 0;
export const UNK = 1;
const FIRST_FILE = 2;

export interface GruOptions {
  /** Train in a worker thread (augur serve), not on the calling one. */
  background?: boolean;
  /** The files modelled: the ones the most traces touched (then the earliest seen), at most this many. */
  vocabulary: number;
  embed: number;
  hidden: number;
  /** Each trace is learned up to this many first touches: start-up is what prefetching is for, and it bounds training. */
  maxSequence: number;
  training: GruTrainingOptions;
  /** Where the trained model is kept; a model trained on the same traces with the same options is loaded instead of trained again. */
  stateDir?: string;
  /** false: the output layer in JavaScript, not WebAssembly (gru-output.ts; for comparing the two). */
  wasm?: boolean;
}

export const DEFAULT_GRU: GruOptions = { vocabulary: 4096, embed: 32, hidden: 64, maxSequence: 1024, training: DEFAULT_TRAINING };

/** The compiled worker (dist/); absent when running from the TypeScript sources (tests), where training stays on this thread. */
const WORKER = new URL("./gru-worker.js", import.meta.url);

/** Trains a copy of `net` in a worker thread; undefined when no worker can run here. */
async function trainInWorker(net: GruNetwork, sequences: TrainingSequence[], training: GruTrainingOptions): Promise<{ net: GruNetwork; report: TrainingReport } | undefined> {
  if (!existsSync(fileURLToPath(WORKER))) return undefined;
  const worker = new Worker(WORKER, { workerData: { shape: net.shape, params: net.params, sequences, training } });
  try {
    const out = await new Promise<{ params: Float32Array; report: TrainingReport }>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`GRU training worker exited ${code}`)));
    });
    return { net: new GruNetwork(net.shape, out.params), report: out.report };
  } finally {
    void worker.terminate();
  }
}

/** Hidden states kept for the latest access sequences: each container asks again after every access. */
const CACHED_STATES = 8;
/** Layer sets whose candidate outputs are kept. */
const CACHED_LAYER_SETS = 32;
/**
 * Rollout steps one predict() call takes at most. A step is ~0.09 ms over
 * 4096 candidates here (output layer 0.03, softmax sum 0.03, GRU step 0.03),
 * so a call stays under ~6 ms; a caller wanting a longer list asks again
 * and the cached rollout goes on (Predictor.perCall).
 */
export const ROLLOUT_PER_CALL = 64;

/** The vocabulary and training sequences of `history`: plain data, so a worker thread can train on them. */
export function gruSequences(history: History, opts: Pick<GruOptions, "vocabulary" | "maxSequence">): { vocabulary: FileKey[]; sequences: TrainingSequence[] } {
  const traced = new Map<string, { file: FileKey; n: number; first: number }>();
  let seen = 0;
  for (const t of history.traces) {
    for (const f of t.files.slice(0, opts.maxSequence)) {
      const id = fileId(f);
      const s = traced.get(id);
      if (s) s.n++;
      else traced.set(id, { file: { layer: f.layer, path: f.path }, n: 1, first: seen++ });
    }
  }
  const vocabulary = [...traced.values()].sort((a, b) => b.n - a.n || a.first - b.first).slice(0, opts.vocabulary).map((s) => s.file);
  const index = new Map(vocabulary.map((f, i) => [fileId(f), i]));
  const sequences = history.traces.filter((t) => t.files.length > 0).map((t) => {
    const files = t.files.slice(0, opts.maxSequence);
    const inputs = new Int32Array(files.length);
    const targets = new Int32Array(files.length);
    files.forEach((f, i) => {
      const o = index.get(fileId(f));
      targets[i] = o ?? -1;
      // the input at step i+1 is the file targeted at step i
      if (i + 1 < files.length) inputs[i + 1] = o === undefined ? UNK : FIRST_FILE + o;
    });
    inputs[0] = BOS;
    return { inputs, targets };
  });
  return { vocabulary, sequences };
}

/** What identifies a training run: the traces and the options, so a saved model can be reused when both are unchanged. */
function fingerprint(history: History, opts: GruOptions): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ ...opts, stateDir: undefined, wasm: undefined }));
  for (const t of history.traces) h.update(`${t.id}\0${t.files.length}\n`);
  return h.digest("hex");
}

/** A state the network reached after BOS and an access sequence, and the rollout from it, kept for the next query. */
interface CachedState {
  tokens: number[];
  h: Float32Array;
  /** The layers (candidates) the rollout is for. */
  layers: string;
  outputs: number[];
  confidences: number[];
  /** after[i]: the state after outputs[i] was fed back. */
  after: Float32Array[];
  /** No candidate was left to roll out. */
  exhausted: boolean;
}

export class GruPredictor implements Predictor {
  readonly name = "gru";
  readonly perCall = ROLLOUT_PER_CALL;
  readonly opts: GruOptions;
  #history: History | undefined;
  #net: GruNetwork | undefined;
  #output: OutputLayer | undefined;
  #vocabulary: FileKey[] = [];
  #index = new Map<string, number>();
  #byLayer = new Map<string, number[]>();
  #candidates = new Map<string, Int32Array>();
  #states: CachedState[] = [];
  #excluded = new Uint8Array(0);
  /** How the latest train() went (undefined when it loaded a saved model). */
  lastTraining: TrainingReport | undefined;

  constructor(opts: Partial<GruOptions> = {}) {
    this.opts = { ...DEFAULT_GRU, ...opts, training: { ...DEFAULT_GRU.training, ...opts.training } };
  }

  async train(history: History): Promise<void> {
    this.#history = history;
    const trainedOn = fingerprint(history, this.opts);
    if (this.opts.stateDir) {
      const saved = await loadGru(this.opts.stateDir).catch(() => undefined);
      if (saved?.trainedOn === trainedOn) {
        this.#use(saved.net, saved.vocabulary);
        this.lastTraining = undefined;
        return;
      }
    }
    const { vocabulary, sequences } = gruSequences(history, this.opts);
    const shape: GruShape = { inputs: FIRST_FILE + vocabulary.length, outputs: vocabulary.length, embed: this.opts.embed, hidden: this.opts.hidden };
    if (vocabulary.length === 0) {
      this.#use(undefined, []);
      return;
    }
    const initial = GruNetwork.initial(shape, seededRandom(this.opts.training.seed));
    const trained = this.opts.background ? await trainInWorker(initial, sequences, this.opts.training) : undefined;
    const net = trained?.net ?? initial;
    this.lastTraining = trained?.report ?? (await trainGru(net, sequences, this.opts.training));
    this.#use(net, vocabulary);
    if (this.opts.stateDir) await saveGru(this.opts.stateDir, { net, vocabulary, trainedOn });
  }

  /** Saves the model (weights and vocabulary) in `dir`. */
  async save(dir: string): Promise<void> {
    if (!this.#net) return;
    await saveGru(dir, { net: this.#net, vocabulary: this.#vocabulary, trainedOn: this.#history ? fingerprint(this.#history, this.opts) : "" });
  }

  /** Loads the model saved in `dir`; `history` gives the predicted files' footprints. Returns false when there is none. */
  async load(dir: string, history?: History): Promise<boolean> {
    const saved = await loadGru(dir);
    if (!saved) return false;
    this.#history = history;
    this.#use(saved.net, saved.vocabulary);
    return true;
  }

  /** Bytes of the weights. */
  modelBytes(): number {
    return this.#net?.params.byteLength ?? 0;
  }

  #use(net: GruNetwork | undefined, vocabulary: FileKey[]): void {
    this.#net = net;
    this.#output = net ? new OutputLayer(net, { wasm: this.opts.wasm !== false }) : undefined;
    this.#vocabulary = vocabulary;
    this.#index = new Map(vocabulary.map((f, i) => [fileId(f), i]));
    this.#byLayer = new Map();
    vocabulary.forEach((f, i) => {
      let list = this.#byLayer.get(f.layer);
      if (!list) this.#byLayer.set(f.layer, (list = []));
      list.push(i);
    });
    this.#candidates = new Map();
    this.#states = [];
    this.#excluded = new Uint8Array(vocabulary.length);
  }

  predict(query: PredictQuery): PredictedFile[] {
    const net = this.#net;
    const output = this.#output;
    if (!net || !output || query.limit <= 0) return [];
    const tokens = query.accessed.map((f) => {
      const o = this.#index.get(fileId(f));
      return o === undefined ? UNK : FIRST_FILE + o;
    });
    const layers = query.workload.layers.join("\n");
    const state = this.#stateFor(net, tokens, layers);
    this.#rollOut(net, output, state, this.#candidatesOf(query.workload.layers), Math.min(query.limit, state.outputs.length + ROLLOUT_PER_CALL));
    const list = new PredictionList(query, this.#history);
    for (let i = 0; i < state.outputs.length && !list.full; i++) list.offer(this.#vocabulary[state.outputs[i] as number] as FileKey, state.confidences[i] as number);
    return list.result();
  }

  /**
   * The cached state for BOS + `tokens` with its rollout for `layers`, made
   * from the longest cached prefix of `tokens`. When the one new token is the
   * file the prefix's rollout predicted first, the rest of that rollout is
   * exactly what the new state would roll out (same state, same exclusions),
   * so it is kept: a container doing what was predicted costs one step a query.
   */
  #stateFor(net: GruNetwork, tokens: readonly number[], layers: string): CachedState {
    let from: CachedState | undefined;
    for (const s of this.#states) {
      if (s.tokens.length > tokens.length || (from && s.tokens.length <= from.tokens.length)) continue;
      let i = 0;
      while (i < s.tokens.length && s.tokens[i] === tokens[i]) i++;
      if (i === s.tokens.length) from = s;
    }
    if (from && from.tokens.length === tokens.length && from.layers === layers) return from;
    let state: CachedState;
    const sameRollout = from && from.layers === layers && from.tokens.length === tokens.length - 1 && from.outputs[0] !== undefined
      && FIRST_FILE + from.outputs[0] === tokens[tokens.length - 1];
    if (from && sameRollout) {
      state = {
        tokens: [...tokens], h: from.after[0] as Float32Array, layers,
        outputs: from.outputs.slice(1), confidences: from.confidences.slice(1), after: from.after.slice(1), exhausted: from.exhausted,
      };
    } else {
      let h = new Float32Array(net.shape.hidden);
      let next = new Float32Array(net.shape.hidden);
      if (from) h.set(from.h);
      else net.step(BOS, next, h);
      for (let i = from?.tokens.length ?? 0; i < tokens.length; i++) {
        net.step(tokens[i] as number, h, next);
        [h, next] = [next, h];
      }
      state = { tokens: [...tokens], h, layers, outputs: [], confidences: [], after: [], exhausted: false };
    }
    // the container that asked moves on: its old entry goes (but the empty start, where every container begins, stays)
    if (from && from.tokens.length > 0) this.#states.splice(this.#states.indexOf(from), 1);
    this.#states.push(state);
    if (this.#states.length > CACHED_STATES) this.#states.shift();
    return state;
  }

  /** Extends `state`'s greedy rollout to `limit` files: each step, the likeliest candidate not accessed nor predicted. */
  #rollOut(net: GruNetwork, output: OutputLayer, state: CachedState, candidates: Int32Array, limit: number): void {
    if (state.exhausted || state.outputs.length >= limit) return;
    const excluded = this.#excluded;
    const marked: number[] = [];
    const mark = (o: number): void => {
      if (!excluded[o]) marked.push(o);
      excluded[o] = 1;
    };
    for (const t of state.tokens) if (t >= FIRST_FILE) mark(t - FIRST_FILE);
    for (const o of state.outputs) mark(o);
    let h = state.after[state.after.length - 1] ?? state.h;
    const logits = new Float32Array(candidates.length);
    try {
      while (state.outputs.length < limit) {
        const at = output.logits(h, candidates, excluded, logits);
        if (at < 0) {
          state.exhausted = true;
          break;
        }
        const best = candidates[at] as number;
        const max = logits[at] as number;
        // confidence: the softmax over the open candidates; logits 20 below the best add under 2e-9 each and are skipped
        let sum = 0;
        for (let i = 0; i < candidates.length; i++) {
          const d = (logits[i] as number) - max;
          if (d > -20) sum += Math.exp(d);
        }
        state.outputs.push(best);
        state.confidences.push(1 / sum);
        mark(best);
        const next = new Float32Array(net.shape.hidden);
        net.step(FIRST_FILE + best, h, next);
        state.after.push(next);
        h = next;
      }
    } finally {
      for (const o of marked) excluded[o] = 0;
    }
  }

  /** Output tokens of files in `layers`. */
  #candidatesOf(layers: readonly string[]): Int32Array {
    const key = layers.join("\n");
    let c = this.#candidates.get(key);
    if (!c) {
      c = Int32Array.from([...new Set(layers)].flatMap((l) => this.#byLayer.get(l) ?? []));
      if (this.#candidates.size >= CACHED_LAYER_SETS) this.#candidates.delete(this.#candidates.keys().next().value as string);
      this.#candidates.set(key, c);
    }
    return c;
  }
}

registerPredictor("gru", (opts: PredictorOptions) => new GruPredictor({ ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), ...(opts.background ? { background: true } : {}) }));
