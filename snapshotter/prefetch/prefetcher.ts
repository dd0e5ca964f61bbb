// Fetches what the predictor says a workload will read, in that order, before
// it reads it. Two moments start a plan:
//   - a pull: at an image's first Prepare its layers are known (the
//     workload is not yet: the prediction leans on the image's history);
//   - a container start: its active snapshot is prepared, and containerd
//     says what it runs (its workload signature); this plan replaces the
//     pull's.
// A plan queues the predicted files `granularity` at a time per layer as jobs
// of the fetch scheduler: the first ones "soon", the rest "later", never more
// than `lookahead` files past the last predicted file the container has
// touched, and never more bytes than the budget. Files of a layer whose index
// is not open yet wait for it.
//
// It adapts how far ahead it runs, per workload: a container that touches a
// predicted file the plan had not queued yet (it caught up) doubles the
// lookahead; a run that leaves more than a third of what was queued unread
// halves it.
import type { FetchPlan } from "../fetch/fetch-queue.js";
import type { FileRanges, LayerIndex } from "../layer/layer-index.js";
import { fileId, type FileKey, type PredictQuery, type PredictedFile, type Predictor } from "../predict/predictor.js";
import type { WorkloadInput } from "../trace/workload.js";
import { logger } from "../util/logging.js";
import type { FetchScheduler } from "./scheduler.js";

const log = logger("prefetch");

export interface PrefetchSettings {
  /** Compressed bytes one plan may fetch. */
  budgetBytes: number;
  /** Predicted files queued together per layer (the seed's prefetch granularity). */
  granularity: number;
  /** Predicted files queued past the container's position at the start; adapted per workload. */
  lookahead: number;
  /** Predictions below this confidence are not fetched. */
  minConfidence: number;
}

export const DEFAULT_PREFETCH: PrefetchSettings = { budgetBytes: 1 << 30, granularity: 16, lookahead: 4096, minConfidence: 0.2 };

/** Files queued "soon" at the head of a plan; the rest go "later". */
const SOON_FILES = 64;
/** Predicted files asked for at most. */
const PREDICTION_LIMIT = 8192;
/** One prefetch request covers at most this many compressed bytes. */
const REQUEST_BYTES = 1 << 20;
const MIN_LOOKAHEAD = 16;
/** A run that left more than this share of its queued files unread was too far ahead. */
const WASTE_LIMIT = 1 / 3;

export interface PrefetcherOptions {
  scheduler: FetchScheduler;
  /** The predictor as currently trained (predict/learner.ts). */
  predictor: () => Predictor;
  /** A layer's index once it is open (remote/remote-layers.ts). */
  layerIndex: (digest: string) => LayerIndex | undefined;
  settings?: Partial<PrefetchSettings>;
}

interface Plan {
  key: string;
  kind: "pull" | "container";
  workload: WorkloadInput & { signature?: string };
  fetch: FetchPlan;
  predicted: PredictedFile[];
  position: Map<string, number>;
  /** Next predicted file not yet queued. */
  next: number;
  /** Files waiting for their layer's index, per layer, in order, with the priority they were meant to have. */
  waiting: Map<string, { files: FileRanges[]; priority: "soon" | "later"; rank: number }[]>;
  queued: Set<string>;
  queuedBytes: number;
  accessed: FileKey[];
  accessedIds: Set<string>;
  /** Furthest predicted position the container has touched. */
  reached: number;
  lookahead: number;
  caughtUp: number;
  started: number;
}

export interface PlanStatus {
  key: string;
  kind: "pull" | "container";
  signature: string | undefined;
  predictedFiles: number;
  queuedFiles: number;
  queuedBytes: number;
  accessedFiles: number;
  /** Queued files the container has touched so far. */
  usedFiles: number;
  lookahead: number;
  ageMs: number;
}

export class Prefetcher {
  readonly settings: PrefetchSettings;
  readonly #opts: PrefetcherOptions;
  readonly #plans = new Map<string, Plan>();
  /** Learned lookahead per workload signature (or layer set). */
  readonly #lookahead = new Map<string, number>();
  /** Files containers touched before their plan started (containerd had not said yet what they run). */
  readonly #before = new Map<number, FileKey[]>();
  /** Layers a prediction named a file of that is not there (logged once each). */
  readonly #missingIn = new Set<string>();

  constructor(opts: PrefetcherOptions) {
    this.#opts = opts;
    this.settings = { ...DEFAULT_PREFETCH, ...opts.settings };
  }

  /**
   * An image's first Prepare: fetch what its workloads read, before any
   * container asks. `again`: the predictor learned something new of it (a
   * profile from the registry arrived): the pull's plan starts over.
   */
  imagePulling(image: { manifest: string; layers: string[] }, again = false): void {
    const key = `pull:${image.manifest}`;
    const old = this.#plans.get(key);
    if (old && again) this.#end(old);
    this.#start(key, "pull", { manifest: image.manifest, layers: image.layers, args: [], cwd: "", env: {} });
  }

  /**
   * A container's root filesystem was prepared; `workload` is what containerd
   * says it runs. Its plan takes over the pull's plan for the same layers:
   * what that queued stays queued (the container's files are mostly the
   * image's), and the container's own prediction adds to it. Only when the
   * two predictions have little in common is the pull's queue dropped.
   */
  containerStarting(snapshot: number, workload: WorkloadInput & { signature?: string }): void {
    const key = `run:${snapshot}`;
    if (this.#plans.has(key)) return;
    const accessed = this.#before.get(snapshot) ?? [];
    this.#before.delete(snapshot);
    const pull = [...this.#plans.values()].find((p) => p.kind === "pull" && p.workload.layers.every((l) => workload.layers.includes(l)));
    if (pull) this.#plans.delete(pull.key);
    const plan = this.#start(key, "container", workload, accessed, pull);
    if (pull && !plan) this.#end(pull);
  }

  /** A container of `snapshot` touched a file (traced open or read). */
  accessed(snapshot: number, file: FileKey): void {
    const plan = this.#plans.get(`run:${snapshot}`);
    if (!plan) {
      let early = this.#before.get(snapshot);
      if (!early) {
        if (this.#before.size >= 256) this.#before.delete(this.#before.keys().next().value as number);
        this.#before.set(snapshot, (early = []));
      }
      if (early.length < PREDICTION_LIMIT && !early.some((f) => f.layer === file.layer && f.path === file.path)) early.push({ layer: file.layer, path: file.path });
      return;
    }
    const id = fileId(file);
    if (plan.accessedIds.has(id)) return;
    plan.accessedIds.add(id);
    plan.accessed.push({ layer: file.layer, path: file.path });
    const at = plan.position.get(id);
    if (at === undefined) return;
    if (at >= plan.next) plan.caughtUp++; // predicted, but not queued yet: the plan was behind
    if (at > plan.reached) {
      plan.reached = at;
      if (plan.caughtUp > 0 && plan.next < plan.predicted.length) plan.lookahead = Math.min(plan.predicted.length, plan.lookahead * 2);
      this.#pump(plan);
    }
  }

  /** The container's run is over: learn from how far ahead the plan was. */
  containerEnded(snapshot: number): void {
    this.#before.delete(snapshot);
    const plan = this.#plans.get(`run:${snapshot}`);
    if (plan) this.#end(plan);
  }

  /** A layer's index opened: queue what waited for it. */
  layerReady(digest: string): void {
    for (const plan of this.#plans.values()) {
      const batches = plan.waiting.get(digest);
      if (!batches) continue;
      plan.waiting.delete(digest);
      for (const b of batches) this.#queue(plan, digest, b.files, b.priority, b.rank);
    }
  }

  /**
   * Where `layer` comes in the order the planned workloads read layers (0:
   * read first), or undefined when no plan predicts a read of it: the order
   * first-contact streams take (remote/stream-order.ts).
   */
  layerRank(layer: string): number | undefined {
    let best: number | undefined;
    for (const plan of this.#plans.values()) {
      const seen: string[] = [];
      for (const p of plan.predicted) {
        if (!seen.includes(p.layer)) seen.push(p.layer);
        if (p.layer === layer) break;
      }
      const rank = seen.indexOf(layer);
      if (rank >= 0 && (best === undefined || rank < best)) best = rank;
    }
    return best;
  }

  status(): PlanStatus[] {
    return [...this.#plans.values()].map((p) => ({
      key: p.key, kind: p.kind, signature: p.workload.signature, predictedFiles: p.predicted.length, queuedFiles: p.queued.size,
      queuedBytes: p.queuedBytes, accessedFiles: p.accessed.length, usedFiles: [...p.queued].filter((id) => p.accessedIds.has(id)).length,
      lookahead: p.lookahead, ageMs: Math.round(performance.now() - p.started),
    }));
  }

  #learnedKey(w: WorkloadInput & { signature?: string }): string {
    return w.signature ?? w.layers.join(",");
  }

  #start(key: string, kind: Plan["kind"], workload: WorkloadInput & { signature?: string }, accessed: FileKey[] = [], from?: Plan): Plan | undefined {
    if (this.#plans.has(key)) return undefined;
    const s = this.settings;
    const predictor = this.#opts.predictor();
    const query: PredictQuery = { workload, accessed: [...accessed], limit: PREDICTION_LIMIT };
    let answer: PredictedFile[];
    try {
      answer = predictor.predict(query);
    } catch (err) {
      log.warn("prediction failed; fetching on demand only", { plan: key, error: String(err) });
      return undefined;
    }
    const predicted = answer.filter((p) => this.#worthFetching(p));
    if (predicted.length === 0 && !(predictor.perCall && answer.length > 0)) return undefined;
    // Taking over a pull's plan: keep its queue unless the predictions disagree.
    const overlap = from ? predicted.filter((p) => from.queued.has(fileId(p))).length / Math.max(1, Math.min(predicted.length, from.queued.size)) : 0;
    const adopt = from && overlap >= 0.5 ? from : undefined;
    if (from && !adopt) this.#end(from);
    if (from) log.debug("pull plan meets container plan", { pull: from.key, queued: from.queued.size, predicted: predicted.length, accessed: accessed.length, overlap: overlap.toFixed(2) });
    const plan: Plan = {
      key, kind, workload, predicted, fetch: adopt?.fetch ?? this.#opts.scheduler.plan(key, s.budgetBytes),
      position: new Map(predicted.map((p, i) => [fileId(p), i])), next: 0, waiting: adopt?.waiting ?? new Map<string, { files: FileRanges[]; priority: "soon" | "later"; rank: number }[]>(),
      queued: adopt?.queued ?? new Set(), queuedBytes: adopt?.queuedBytes ?? 0,
      accessed: [...accessed], accessedIds: new Set(accessed.map(fileId)), reached: 0,
      lookahead: this.#lookahead.get(this.#learnedKey(workload)) ?? s.lookahead, caughtUp: 0, started: adopt?.started ?? performance.now(),
    };
    this.#plans.set(key, plan);
    log.debug("prefetch plan", { plan: key, files: predicted.length, first: predicted.slice(0, 3).map((p) => p.path).join(" "), lookahead: plan.lookahead, ...(adopt ? { from: adopt.key } : {}) });
    this.#pump(plan);
    if (predictor.perCall && answer.length < PREDICTION_LIMIT) this.#extend(plan, predictor, query, answer.length);
    return plan;
  }

  #worthFetching(p: PredictedFile): boolean {
    return p.confidence >= this.settings.minConfidence && p.ranges.length > 0;
  }

  /**
   * A predictor that answers a few files a call (Predictor.perCall): the rest
   * of the plan is asked for one call a turn of the event loop, so FUSE
   * requests and gRPC calls are served between them; the first files are
   * queued meanwhile. Stops when an answer brings nothing new.
   */
  #extend(plan: Plan, predictor: Predictor, query: PredictQuery, answered: number): void {
    setImmediate(() => {
      if (this.#plans.get(plan.key) !== plan || plan.fetch.cancelled) return;
      let answer: PredictedFile[];
      try {
        answer = predictor.predict({ ...query, limit: Math.min(PREDICTION_LIMIT, answered + (predictor.perCall ?? PREDICTION_LIMIT)) });
      } catch (err) {
        log.warn("prediction failed; the plan keeps what it has", { plan: plan.key, error: String(err) });
        return;
      }
      if (answer.length <= answered) return;
      for (const p of answer.slice(answered)) {
        if (!this.#worthFetching(p) || plan.position.has(fileId(p))) continue;
        plan.position.set(fileId(p), plan.predicted.length);
        plan.predicted.push(p);
      }
      this.#pump(plan);
      if (answer.length < PREDICTION_LIMIT) this.#extend(plan, predictor, query, answer.length);
    });
  }

  /** Queues predicted files up to the lookahead past the container's position. */
  #pump(plan: Plan): void {
    const until = Math.min(plan.predicted.length, plan.reached + plan.lookahead);
    const g = Math.max(1, this.settings.granularity);
    while (plan.next < until && !plan.fetch.cancelled) {
      // a batch: up to g consecutive predicted files of one layer
      const first = plan.predicted[plan.next] as PredictedFile;
      const batch: FileRanges[] = [];
      const rank = plan.next;
      const priority = rank < SOON_FILES ? "soon" : "later";
      while (plan.next < until && batch.length < g) {
        const p = plan.predicted[plan.next] as PredictedFile;
        if (p.layer !== first.layer) break;
        plan.next++;
        if (plan.accessedIds.has(fileId(p)) || plan.queued.has(fileId(p))) continue; // read already, or queued by the pull
        plan.queued.add(fileId(p));
        batch.push({ path: p.path, ranges: p.ranges });
      }
      if (batch.length) this.#queue(plan, first.layer, batch, priority, rank);
    }
  }

  #queue(plan: Plan, layer: string, files: FileRanges[], priority: "soon" | "later", rank: number): void {
    const index = this.#opts.layerIndex(layer);
    if (!index) {
      const waiting = plan.waiting.get(layer);
      if (waiting) waiting.push({ files, priority, rank });
      else plan.waiting.set(layer, [{ files, priority, rank }]);
      return;
    }
    plan.queuedBytes += index.fetchAhead(files, { priority, rank, plan: plan.fetch, maxRequestBytes: REQUEST_BYTES }, (path) => this.#missing(layer, path));
  }

  /** A predicted file its layer does not have (a profile from elsewhere that is wrong, or stale): said once per layer. */
  #missing(layer: string, path: string): void {
    if (this.#missingIn.has(layer)) return;
    this.#missingIn.add(layer);
    log.warn("predicted file is not in its layer; skipped (further ones in this layer are not logged)", { layer, path });
  }

  #end(plan: Plan): void {
    plan.fetch.cancel();
    this.#plans.delete(plan.key);
    if (plan.kind !== "container" || plan.queued.size === 0) return;
    const used = [...plan.queued].filter((id) => plan.accessedIds.has(id)).length;
    const waste = 1 - used / plan.queued.size;
    const key = this.#learnedKey(plan.workload);
    let next = plan.lookahead;
    if (waste > WASTE_LIMIT) next = Math.max(MIN_LOOKAHEAD, Math.floor(plan.lookahead / 2));
    this.#lookahead.set(key, next);
    log.debug("prefetch plan ended", { plan: plan.key, queued: plan.queued.size, used, lookahead: next });
  }
}
