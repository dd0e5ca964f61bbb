import { describe, it, expect } from "vitest";
import { evaluate, folds, median, overlapBytes, percentile, renderMarkdown, type EvaluationResult, type Metrics, type SplitName } from "../../../snapshotter/predict/evaluate.js";
import { predictorNames, type PredictQuery, type PredictedFile, type Predictor } from "../../../snapshotter/predict/predictor.js";
import "../../../snapshotter/predict/predictors.js";
import { makeTrace } from "./helpers.js";

const L = "sha256:L";
const M = "sha256:M";

// Workload W (args "run") ran twice on layer L; workload W2 (args "other") once on L and M.
// t1: a read whole, b read [0,500) at 10 ms, c read whole at 40 s (after start-up).
const t1 = makeTrace({ id: "t1", started: 1000, layers: [L], files: [
  { path: "a", size: 1000, t: 0, reads: [[0, 1000]] },
  { path: "b", size: 2000, t: 10, reads: [[0, 500]] },
  { path: "c", size: 4000, t: 40_000, reads: [[0, 4000]] },
] });
// t2: a read [500,1000), b opened at 100 ms and not read (page cache), d read whole at 200 ms.
const t2 = makeTrace({ id: "t2", started: 2000, layers: [L], files: [
  { path: "a", size: 1000, t: 0, reads: [[500, 500]] },
  { path: "b", size: 2000, t: 100 },
  { path: "d", size: 3000, t: 200, reads: [[0, 3000]] },
] });
// t3: a read whole, then e of layer M read whole at 5 ms.
const t3 = makeTrace({ id: "t3", started: 3000, layers: [L, M], args: ["other"], files: [
  { path: "a", size: 1000, t: 0, reads: [[0, 1000]] },
  { path: "e", layer: M, size: 100, t: 5, reads: [[0, 100]] },
] });

const row = (r: EvaluationResult, predictor: string, split: SplitName): Metrics => {
  const found = r.rows.find((x) => x.predictor === predictor && x.split === split);
  if (!found) throw new Error(`no row ${predictor} ${split}`);
  return found.metrics;
};

describe("evaluation", () => {
  it("measures bytes exactly: overlap, median, nearest-rank percentile", () => {
    expect(overlapBytes([{ offset: 0, length: 10 }, { offset: 20, length: 10 }], [{ offset: 5, length: 20 }])).toBe(5 + 5);
    expect(overlapBytes([{ offset: 0, length: 10 }], [{ offset: 10, length: 10 }])).toBe(0);
    expect(overlapBytes([], [{ offset: 0, length: 10 }])).toBe(0);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([])).toBeNull();
    expect(percentile([...Array(100).keys()].map((i) => i + 1), 95)).toBe(95);
    expect(percentile([5], 95)).toBe(5);
  });

  it("splits later runs by time and leaves each workload out", () => {
    const { laterRuns, leaveOneOut } = folds([t3, t2, t1]);
    expect(laterRuns.map((f) => [f.heldOut.map((t) => t.header.id), f.train.map((t) => t.header.id)])).toEqual([[["t2"], ["t1"]]]);
    expect(leaveOneOut.map((f) => [f.heldOut.map((t) => t.header.id), f.train.map((t) => t.header.id)])).toEqual([
      [["t1", "t2"], ["t3"]],
      [["t3"], ["t1", "t2"]],
    ]);
  });

  it("scores replay on a hand-worked case: precision, recall, leads", async () => {
    const r = await evaluate([t1, t2, t3], ["replay"]);

    // later runs: t2 predicted from t1. Every query replays t1 (a, b, c with t1's footprints:
    // a [0,1000), b [0,500), c [0,4000)): predicted 1000 + 500 + 4000 = 5500 bytes.
    // t2's truth: a [500,1000) (its own read), b [0,500) (not read: footprint over all traces, t1's read), d [0,3000).
    // correct: a 500 + b 500 = 1000.
    const later = row(r, "replay", "later-runs");
    expect(later.traces).toBe(1);
    expect(later.predictedBytes).toBe(5500);
    expect(later.correctBytes).toBe(1000);
    expect(later.precision).toBeCloseTo(1000 / 5500, 12);
    // start-up (first 30 s): a 500 + b 500 + d 3000 = 4000 bytes; predicted in time: a 500 + b 500
    expect(later.startupBytes).toBe(4000);
    expect(later.startupPredictedBytes).toBe(1000);
    expect(later.recall).toBeCloseTo(0.25, 12);
    // a and b were predicted by the t=0 query: leads 0 ms (a touched at 0) and 100 ms (b at 100)
    expect(later.startupFiles).toBe(3);
    expect(later.startupFilesPredicted).toBe(2);
    expect(later.medianLeadMs).toBe(50);
    expect(later.atStartShare).toBe(1);
    // queries: t=0 and after each of the 3 first touches
    expect(later.queries).toBe(4);
    expect(later.trainings).toBe(1);
    expect(later.contractViolations).toBe(0);

    // leave W out: t1 and t2 predicted from t3 (similar: shares L); only a is in W's layers: a [0,1000).
    //   t1: predicted 1000, correct 1000; start-up a 1000 + b 500 = 1500 (c is after 30 s), in time 1000.
    //   t2: predicted 1000, correct 500; start-up 4000, in time 500.
    // leave W2 out: t3 predicted from t1, t2 (equally similar, so the newer, t2: a, b, d with
    // footprints over t1 and t2: a [0,1000), b [0,500), d [0,3000)): predicted 4500, correct a 1000;
    //   start-up a 1000 + e 100 = 1100, in time 1000.
    const loo = row(r, "replay", "leave-one-workload-out");
    expect(loo.traces).toBe(3);
    expect(loo.predictedBytes).toBe(1000 + 1000 + 4500);
    expect(loo.correctBytes).toBe(1000 + 500 + 1000);
    expect(loo.startupBytes).toBe(1500 + 4000 + 1100);
    expect(loo.startupPredictedBytes).toBe(1000 + 500 + 1000);
    expect(loo.recall).toBeCloseTo(2500 / 6600, 12);
    expect(loo.medianLeadMs).toBe(0);
    expect(loo.trainings).toBe(2);
    // restricted to layers some training trace has: t3's e (layer M) is unknown to t1 and t2
    const shared = row(r, "replay", "leave-one-workload-out/shared-layers");
    expect(shared.startupBytes).toBe(1500 + 4000 + 1000);
    expect(shared.startupPredictedBytes).toBe(2500);
    expect(shared.precision).toBeCloseTo(2500 / 6500, 12);

    const md = renderMarkdown(r);
    expect(md).toContain("| replay | later-runs | 1 | 18.2% | 25.0% |");
    expect(md.split("\n").filter((l) => l.startsWith("| replay")).length).toBe(3);
  });

  it("queries every `granularity` first touches and counts predictions of accessed files as violations", async () => {
    const seen: number[] = [];
    const stub: Predictor = {
      name: "stub",
      train: async () => undefined,
      predict: (q: PredictQuery): PredictedFile[] => {
        seen.push(q.accessed.length);
        // always a, even once accessed; limit 1
        return [{ layer: L, path: "a", ranges: [{ offset: 0, length: 1000 }], confidence: 1 }, { layer: L, path: "b", ranges: [], confidence: 1 }].slice(0, q.limit);
      },
    };
    const r = await evaluate([t1, t2], [{ name: "stub", create: () => stub }], { granularity: 2, limit: 1 });
    // t2 held out (later runs): queries after 0 and 2 of its 3 touches; the second predicts accessed a
    expect(seen).toEqual([0, 2]);
    const m = row(r, "stub", "later-runs");
    expect(m.queries).toBe(2);
    expect(m.contractViolations).toBe(1);
    expect(m.predictedBytes).toBe(1000);
    expect(m.correctBytes).toBe(500);
    // no other workload: nothing to leave out
    expect(row(r, "stub", "leave-one-workload-out").traces).toBe(0);
    expect(row(r, "stub", "leave-one-workload-out").precision).toBeNull();
  });

  it("runs every registered predictor within the Predictor contract", async () => {
    const names = predictorNames();
    expect([...names].sort()).toEqual(["frequency", "gru", "locality", "markov", "replay"]);
    const r = await evaluate([t1, t2, t3], names);
    expect(r.rows.length).toBe(3 * names.length);
    for (const { metrics } of r.rows) {
      expect(metrics.contractViolations).toBe(0);
      expect(metrics.correctBytes).toBeLessThanOrEqual(metrics.predictedBytes);
      expect(metrics.startupPredictedBytes).toBeLessThanOrEqual(metrics.startupBytes);
    }
    expect(row(r, "gru", "later-runs").modelBytes).toBeGreaterThan(0);
    expect(row(r, "replay", "later-runs").modelBytes).toBeNull();
  });
});
