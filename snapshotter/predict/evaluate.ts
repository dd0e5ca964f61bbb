// Offline evaluation of predictors on recorded traces (`augur predict eval`).
//
// Splits. Every held-out trace is predicted by a predictor trained on a
// history that does not contain it:
// - "later-runs": for each workload signature with two or more traces, each of
//   its traces but the first (oldest) is held out and predicted from every
//   trace, of any workload, that started strictly before it: how well the
//   node does on a workload's next run.
// - "leave-one-workload-out": for each signature, all its traces leave the
//   training set and each of them is predicted from all the others' traces:
//   how well a workload never seen does, on what similar ones taught.
// - "leave-one-workload-out/shared-layers": the same runs, counting only files
//   in layers that some training trace's workload has (what history could
//   know of at all).
//
// Online use. For each held-out trace the predictor is asked at t=0 with
// nothing accessed, then after every `granularity`-th first touch of a file
// (including after the last one: online nobody knows it is the last), each
// time with `limit`. The query after the i-th first touch is at that touch's
// time and has the first i files accessed. The workload (with its signature)
// is known from the first query. A prediction of a file already accessed
// breaks the Predictor contract: it is counted (contractViolations) and
// otherwise ignored.
//
// Bytes. Each file's bytes are sets of byte ranges, merged; sums are exact.
// - predicted(f): the union of the ranges of every prediction of f (the
//   predictors give their training history's footprint; locality, what its
//   heuristics would fetch).
// - truth(f), for a file the held-out trace opened or read: its own reads of
//   f; if it did not read f (the page cache hid them), f's footprint in a
//   history of ALL traces (history.ts: every trace's reads, else the default
//   for a file nobody saw read). Files it did not touch have no truth bytes.
// - startup(f), for a file first touched within `startupMs` of the trace's
//   start (a start-up file): its reads made within `startupMs`; if it did not
//   read f at all, the all-traces footprint as above.
// Metrics, summed over the split's held-out traces before dividing:
// - precision = Σ |predicted(f) ∩ truth(f)| / Σ |predicted(f)|;
// - recall = Σ over start-up files |predicted(f) ∩ startup(f)| / Σ |startup(f)|.
//   Every valid prediction of f comes before f's first touch (accessed files
//   are not predicted), so predicted(f) is what was predicted in time;
// - a start-up file is predicted in time when some query predicted it; its
//   lead = its first-touch time − the time of the first query predicting it.
//   medianLeadMs over all such files; atStartShare = the share of them the
//   t=0 query already predicted;
// - latency: median and 95th percentile (nearest rank) of each predict() call,
//   in ms; training: mean ms per train() call, and the largest modelBytes().
import { fileId, createPredictor, type FileKey, type LayerCatalog, type PredictQuery, type Predictor, type Range } from "./predictor.js";
import { mergeRanges, rangeBytes, summarize, TraceHistory, workloadOf } from "./history.js";
import type { Trace } from "../trace/trace-format.js";

export const DEFAULT_GRANULARITY = 1;
/**
 * Files per query: about what a prefetcher keeps queued ahead of a
 * container (a start-up touches hundreds of files, each query looks a few
 * dozen ahead), small enough that a predictor is judged on its order.
 */
export const DEFAULT_LIMIT = 64;
export const DEFAULT_STARTUP_MS = 30_000;

export type SplitName = "later-runs" | "leave-one-workload-out" | "leave-one-workload-out/shared-layers";

export interface EvaluationOptions {
  granularity: number;
  limit: number;
  startupMs: number;
  /** Layer listings for the locality predictor. */
  catalog?: LayerCatalog;
}

/** A predictor by registered name, or made by the caller (other options, a fixed seed). */
export type PredictorSpec = string | { name: string; create: () => Predictor };

export interface Metrics {
  /** Held-out traces. */
  traces: number;
  predictedBytes: number;
  correctBytes: number;
  /** null when nothing was predicted. */
  precision: number | null;
  startupBytes: number;
  startupPredictedBytes: number;
  /** null when the traces read nothing at start-up. */
  recall: number | null;
  startupFiles: number;
  /** Start-up files predicted before their first touch. */
  startupFilesPredicted: number;
  medianLeadMs: number | null;
  atStartShare: number | null;
  queries: number;
  latencyMedianMs: number | null;
  latencyP95Ms: number | null;
  trainings: number;
  trainMsMean: number | null;
  modelBytes: number | null;
  contractViolations: number;
}

export interface EvaluationRow {
  predictor: string;
  split: SplitName;
  metrics: Metrics;
}

export interface EvaluationResult {
  options: Omit<EvaluationOptions, "catalog">;
  traces: number;
  rows: EvaluationRow[];
}

/** Bytes in both of two merged (sorted, disjoint) range lists. */
export function overlapBytes(a: readonly Range[], b: readonly Range[]): number {
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] as Range;
    const y = b[j] as Range;
    const lo = Math.max(x.offset, y.offset);
    const hi = Math.min(x.offset + x.length, y.offset + y.length);
    if (hi > lo) n += hi - lo;
    if (x.offset + x.length < y.offset + y.length) i++;
    else j++;
  }
  return n;
}

export const median = (xs: readonly number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

/** The nearest-rank percentile `p` (0-100). */
export const percentile = (xs: readonly number[], p: number): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] as number;
};

/** What is true of one held-out trace, per file id. */
interface Truth {
  files: FileKey[];
  truth: Map<string, Range[]>;
  startup: Map<string, Range[]>;
  firstTouch: Map<string, number>;
}

function truthOf(trace: Trace, all: TraceHistory, startupMs: number): Truth {
  const summary = summarize(trace);
  const reads = new Map<string, Range[]>();
  const early = new Map<string, Range[]>();
  for (const a of trace.accesses) {
    if (a.op !== "read" || !a.length || a.offset === undefined) continue;
    const r = { offset: a.offset, length: a.length };
    const id = fileId(a);
    reads.set(id, [...(reads.get(id) ?? []), r]);
    if (a.t < startupMs) early.set(id, [...(early.get(id) ?? []), r]);
  }
  const truth = new Map<string, Range[]>();
  const startup = new Map<string, Range[]>();
  const firstTouch = new Map<string, number>();
  for (const f of summary.files) {
    const id = fileId(f);
    const own = reads.get(id);
    const t = own ? mergeRanges(own) : mergeRanges(all.footprint(f));
    truth.set(id, t);
    firstTouch.set(id, f.t);
    if (f.t < startupMs) startup.set(id, own ? mergeRanges(early.get(id) ?? []) : t);
  }
  return { files: summary.files.map((f) => ({ layer: f.layer, path: f.path })), truth, startup, firstTouch };
}

/** Sums one split's figures over its held-out traces. */
class Tally {
  traces = 0;
  predictedBytes = 0;
  correctBytes = 0;
  startupBytes = 0;
  startupPredictedBytes = 0;
  startupFiles = 0;
  startupFilesPredicted = 0;
  atStart = 0;
  contractViolations = 0;
  readonly leads: number[] = [];
  readonly latencies: number[] = [];
  readonly trainMs: number[] = [];
  modelBytes: number | null = null;

  metrics(): Metrics {
    const ratio = (a: number, b: number): number | null => (b > 0 ? a / b : null);
    return {
      traces: this.traces,
      predictedBytes: this.predictedBytes, correctBytes: this.correctBytes, precision: ratio(this.correctBytes, this.predictedBytes),
      startupBytes: this.startupBytes, startupPredictedBytes: this.startupPredictedBytes, recall: ratio(this.startupPredictedBytes, this.startupBytes),
      startupFiles: this.startupFiles, startupFilesPredicted: this.startupFilesPredicted,
      medianLeadMs: median(this.leads), atStartShare: ratio(this.atStart, this.startupFilesPredicted),
      queries: this.latencies.length, latencyMedianMs: median(this.latencies), latencyP95Ms: percentile(this.latencies, 95),
      trainings: this.trainMs.length, trainMsMean: this.trainMs.length ? this.trainMs.reduce((a, b) => a + b, 0) / this.trainMs.length : null,
      modelBytes: this.modelBytes, contractViolations: this.contractViolations,
    };
  }
}

/** What one held-out trace's online run predicted: per file, the union of predicted ranges and the first query's time. */
interface Run {
  predicted: Map<string, { file: FileKey; ranges: Range[]; firstAt: number; firstQuery: number }>;
  latencies: number[];
  violations: number;
}

function simulate(predictor: Predictor, trace: Trace, truth: Truth, opts: EvaluationOptions): Run {
  const workload = workloadOf(trace);
  const predicted: Run["predicted"] = new Map();
  const latencies: number[] = [];
  let violations = 0;
  const n = truth.files.length;
  for (let i = 0, q = 0; i <= n; i += opts.granularity, q++) {
    const accessed = truth.files.slice(0, i);
    const at = i === 0 ? 0 : (truth.firstTouch.get(fileId(truth.files[i - 1] as FileKey)) as number);
    const query: PredictQuery = { workload, accessed, limit: opts.limit };
    const start = performance.now();
    const out = predictor.predict(query);
    latencies.push(performance.now() - start);
    const done = new Set(accessed.map(fileId));
    for (const p of out.slice(0, opts.limit)) {
      const id = fileId(p);
      if (done.has(id)) {
        violations++;
        continue;
      }
      const seen = predicted.get(id);
      if (seen) seen.ranges = mergeRanges([...seen.ranges, ...p.ranges]);
      else predicted.set(id, { file: { layer: p.layer, path: p.path }, ranges: mergeRanges(p.ranges), firstAt: at, firstQuery: q });
    }
  }
  return { predicted, latencies, violations };
}

/** Adds one run to `tally`, counting only files `counts` accepts. */
function score(tally: Tally, run: Run, truth: Truth, counts: (f: FileKey) => boolean): void {
  tally.traces++;
  tally.latencies.push(...run.latencies);
  tally.contractViolations += run.violations;
  for (const [id, p] of run.predicted) {
    if (!counts(p.file)) continue;
    tally.predictedBytes += rangeBytes(p.ranges);
    tally.correctBytes += overlapBytes(p.ranges, truth.truth.get(id) ?? []);
  }
  for (const f of truth.files) {
    const id = fileId(f);
    const startup = truth.startup.get(id);
    if (!startup || !counts(f)) continue;
    tally.startupFiles++;
    tally.startupBytes += rangeBytes(startup);
    const p = run.predicted.get(id);
    if (!p) continue;
    tally.startupPredictedBytes += overlapBytes(p.ranges, startup);
    tally.startupFilesPredicted++;
    tally.leads.push((truth.firstTouch.get(id) as number) - p.firstAt);
    if (p.firstQuery === 0) tally.atStart++;
  }
}

interface Fold {
  train: Trace[];
  heldOut: Trace[];
}

/** The folds of each split (see the top of this file). */
export function folds(traces: readonly Trace[]): { laterRuns: Fold[]; leaveOneOut: Fold[] } {
  const sorted = [...traces].sort((a, b) => a.header.started - b.header.started);
  const bySignature = new Map<string, Trace[]>();
  for (const t of sorted) {
    const sig = workloadOf(t).signature;
    bySignature.set(sig, [...(bySignature.get(sig) ?? []), t]);
  }
  const laterRuns: Fold[] = [];
  const leaveOneOut: Fold[] = [];
  for (const [sig, own] of bySignature) {
    for (const t of own.slice(1)) laterRuns.push({ train: sorted.filter((o) => o.header.started < t.header.started), heldOut: [t] });
    const rest = sorted.filter((o) => workloadOf(o).signature !== sig);
    if (rest.length) leaveOneOut.push({ train: rest, heldOut: own });
  }
  return { laterRuns, leaveOneOut };
}

async function train(predictor: Predictor, traces: Trace[], catalog: LayerCatalog | undefined, tally: Tally[]): Promise<void> {
  const start = performance.now();
  await predictor.train(new TraceHistory(traces, catalog));
  const ms = performance.now() - start;
  const bytes = predictor.modelBytes?.();
  for (const t of tally) {
    t.trainMs.push(ms);
    if (bytes !== undefined) t.modelBytes = Math.max(t.modelBytes ?? 0, bytes);
  }
}

/** Evaluates each predictor on each split of `traces`. */
export async function evaluate(traces: readonly Trace[], predictors: readonly PredictorSpec[], options: Partial<EvaluationOptions> = {}): Promise<EvaluationResult> {
  const opts: EvaluationOptions = {
    granularity: Math.max(1, Math.floor(options.granularity ?? DEFAULT_GRANULARITY)),
    limit: options.limit ?? DEFAULT_LIMIT,
    startupMs: options.startupMs ?? DEFAULT_STARTUP_MS,
    ...(options.catalog ? { catalog: options.catalog } : {}),
  };
  const all = new TraceHistory(traces);
  const truths = new Map<Trace, Truth>(traces.map((t) => [t, truthOf(t, all, opts.startupMs)]));
  const { laterRuns, leaveOneOut } = folds(traces);
  const rows: EvaluationRow[] = [];
  for (const spec of predictors) {
    const predictor = typeof spec === "string" ? createPredictor(spec) : spec.create();
    const name = typeof spec === "string" ? spec : spec.name;
    const later = new Tally();
    for (const fold of laterRuns) {
      await train(predictor, fold.train, opts.catalog, [later]);
      for (const t of fold.heldOut) score(later, simulate(predictor, t, truths.get(t) as Truth, opts), truths.get(t) as Truth, () => true);
    }
    const loo = new Tally();
    const shared = new Tally();
    for (const fold of leaveOneOut) {
      await train(predictor, fold.train, opts.catalog, [loo, shared]);
      const known = new Set(fold.train.flatMap((t) => workloadOf(t).layers));
      for (const t of fold.heldOut) {
        const truth = truths.get(t) as Truth;
        const run = simulate(predictor, t, truth, opts);
        score(loo, run, truth, () => true);
        score(shared, run, truth, (f) => known.has(f.layer));
      }
    }
    rows.push({ predictor: name, split: "later-runs", metrics: later.metrics() });
    rows.push({ predictor: name, split: "leave-one-workload-out", metrics: loo.metrics() });
    rows.push({ predictor: name, split: "leave-one-workload-out/shared-layers", metrics: shared.metrics() });
  }
  const { catalog: _catalog, ...shown } = opts;
  return { options: shown, traces: traces.length, rows };
}

const fmt = (v: number | null, digits: number): string => (v === null ? "–" : v.toFixed(digits));
const pct = (v: number | null): string => (v === null ? "–" : `${(100 * v).toFixed(1)}%`);

/** The result as a Markdown table, one row per predictor and split. */
export function renderMarkdown(result: EvaluationResult): string {
  const { granularity, limit, startupMs } = result.options;
  const lines = [
    `${result.traces} traces; a query every ${granularity} first touch(es), at most ${limit} files each; start-up = first ${startupMs} ms.`,
    "",
    "| predictor | split | held out | precision | recall | predicted MiB | start-up MiB | median lead ms | at t=0 | predict ms (median / p95) | train ms | model bytes |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const mib = (n: number): string => (n / (1 << 20)).toFixed(2);
  for (const { predictor, split, metrics: m } of result.rows) {
    lines.push(`| ${predictor} | ${split} | ${m.traces} | ${pct(m.precision)} | ${pct(m.recall)} | ${mib(m.predictedBytes)} | ${mib(m.startupBytes)} | `
      + `${fmt(m.medianLeadMs, 0)} | ${pct(m.atStartShare)} | ${fmt(m.latencyMedianMs, 3)} / ${fmt(m.latencyP95Ms, 3)} | ${fmt(m.trainMsMean, 0)} | ${m.modelBytes ?? "–"} |`);
  }
  return lines.join("\n") + "\n";
}
