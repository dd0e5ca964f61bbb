import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, it, expect } from "vitest";
import { GRU_WEIGHTS_FILE } from "../../../snapshotter/predict/gru-model-file.js";
import { DEFAULT_TRAINING } from "../../../snapshotter/predict/gru-training.js";
import { TraceHistory } from "../../../snapshotter/predict/history.js";
import { GruPredictor, gruSequences, ROLLOUT_PER_CALL, UNK, BOS } from "../../../snapshotter/predict/predictor-gru.js";
import type { FileKey, PredictQuery } from "../../../snapshotter/predict/predictor.js";
import { makeTrace, paths } from "./helpers.js";

const L = "sha256:L";
const key = (path: string): FileKey => ({ layer: L, path });
const sequence = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"];
const history = new TraceHistory([1, 2, 3].map((i) => makeTrace({ id: `t${i}`, started: i, layers: [L], files: sequence.map((path) => ({ path, size: 100, reads: [[0, 100]] })) })));
const workload = { layers: [L], args: ["run"], cwd: "/", env: {} };
const training = { ...DEFAULT_TRAINING, epochs: 200, timeMs: 20_000, learningRate: 0.02, seed: 42, targetLoss: 0.05 };

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const tempDir = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), "augur-gru-"));
  dirs.push(d);
  return d;
};

describe("gru predictor", () => {
  it("turns traces into BOS-led token sequences over a capped vocabulary", () => {
    const mixed = new TraceHistory([
      makeTrace({ id: "a", started: 1, layers: [L], files: ["x", "y", "z"] }),
      makeTrace({ id: "b", started: 2, layers: [L], files: ["y", "w"] }),
    ]);
    const { vocabulary, sequences } = gruSequences(mixed, { vocabulary: 2, maxSequence: 10 });
    // y is in both traces; then x, seen first
    expect(paths(vocabulary)).toEqual(["y", "x"]);
    expect([...(sequences[0]?.inputs ?? [])]).toEqual([BOS, 2 + 1, 2 + 0]);
    expect([...(sequences[0]?.targets ?? [])]).toEqual([1, 0, -1]);
    expect([...(sequences[1]?.inputs ?? [])]).toEqual([BOS, 2 + 0]);
    expect([...(sequences[1]?.targets ?? [])]).toEqual([0, -1]);
    expect(UNK).toBe(1);
    expect(gruSequences(mixed, { vocabulary: 10, maxSequence: 1 }).sequences.map((s) => s.inputs.length)).toEqual([1, 1]);
  });

  it("learns a short deterministic sequence (fixed seed) and predicts what comes next", async () => {
    const p = new GruPredictor({ embed: 8, hidden: 16, training });
    await p.train(history);
    expect(p.lastTraining?.loss).toBeLessThan(0.5);
    expect(paths(p.predict({ workload, accessed: [], limit: 1 }))).toEqual(["f0"]);
    expect(paths(p.predict({ workload, accessed: ["f0", "f1", "f2"].map(key), limit: 1 }))).toEqual(["f3"]);
    const rest = p.predict({ workload, accessed: ["f0", "f1"].map(key), limit: 10 });
    expect(paths(rest)).toEqual(sequence.slice(2));
    expect(rest[0]?.ranges).toEqual([{ offset: 0, length: 100 }]);
    expect(rest[0]?.confidence).toBeGreaterThan(0.5);
    // another layer set: nothing the model knows
    expect(p.predict({ workload: { ...workload, layers: ["sha256:other"] }, accessed: [], limit: 5 })).toEqual([]);
    expect(p.modelBytes()).toBe(4 * (10 * 8 + 48 * 8 + 48 * 16 + 2 * 48 + 8 * 16 + 8));
  });

  it("answers the same whether or not it reuses a cached state and rollout", async () => {
    const p = new GruPredictor({ embed: 8, hidden: 16, training: { ...training, epochs: 5 } });
    await p.train(history);
    const dir = await tempDir();
    await p.save(dir);
    const queries: PredictQuery[] = [[], ["f0"], ["f0", "f1"], ["f0", "f1", "f5"], ["f0", "f1", "f5", "f2"], ["f0", "f1"]]
      .map((a) => ({ workload, accessed: a.map(key), limit: 4 }));
    for (const q of queries) {
      const fresh = new GruPredictor({ embed: 8, hidden: 16 });
      expect(await fresh.load(dir, history)).toBe(true);
      const cached = p.predict(q);
      const uncached = fresh.predict(q);
      expect(paths(cached)).toEqual(paths(uncached));
      cached.forEach((f, i) => expect(f.confidence).toBeCloseTo(uncached[i]?.confidence ?? -1, 5));
    }
  });

  it("keeps its model under stateDir and loads it instead of training again on the same traces", async () => {
    const dir = await tempDir();
    const first = new GruPredictor({ embed: 8, hidden: 16, training: { ...training, epochs: 3 }, stateDir: dir });
    await first.train(history);
    expect(first.lastTraining?.epochs).toBe(3);
    const second = new GruPredictor({ embed: 8, hidden: 16, training: { ...training, epochs: 3 }, stateDir: dir });
    await second.train(history);
    expect(second.lastTraining).toBeUndefined();
    const q = { workload, accessed: [key("f0")], limit: 8 };
    expect(second.predict(q)).toEqual(first.predict(q));
    // a damaged weights file is refused, and train() then trains afresh
    await writeFile(join(dir, GRU_WEIGHTS_FILE), Buffer.alloc(12));
    await expect(new GruPredictor().load(dir)).rejects.toThrow(/expected/);
    const third = new GruPredictor({ embed: 8, hidden: 16, training: { ...training, epochs: 3 }, stateDir: dir });
    await third.train(history);
    expect(third.lastTraining?.epochs).toBe(3);
    expect(await new GruPredictor().load(await tempDir())).toBe(false);
  });

  it("stops training on its time budget", async () => {
    const p = new GruPredictor({ embed: 8, hidden: 16, training: { ...training, epochs: 1_000_000, timeMs: 50, targetLoss: 0 } });
    await p.train(history);
    expect(p.lastTraining?.outOfTime).toBe(true);
    expect(p.lastTraining?.ms).toBeLessThan(2_000);
  });
  it("rolls out at most ROLLOUT_PER_CALL files a call, and a call for more goes on where the last one stopped", async () => {
    const long = Array.from({ length: 300 }, (_, i) => `g${i}`);
    const p = new GruPredictor({ embed: 8, hidden: 16, training: { ...training, epochs: 1 } });
    await p.train(new TraceHistory([makeTrace({ id: "long", started: 1, layers: [L], files: long })]));
    const query: PredictQuery = { workload, accessed: long.slice(0, 3).map(key), limit: 1000 };
    const first = p.predict(query);
    expect(first).toHaveLength(ROLLOUT_PER_CALL);
    const second = p.predict(query);
    expect(second).toHaveLength(2 * ROLLOUT_PER_CALL);
    expect(paths(second.slice(0, ROLLOUT_PER_CALL))).toEqual(paths(first));
    // within its limit a call answers in full
    expect(p.predict({ ...query, limit: 10 })).toHaveLength(10);
    // to the end: every file but the accessed ones, each once
    let all = second;
    for (let calls = 0; calls < 10 && all.length < long.length - 3; calls++) all = p.predict(query);
    expect(new Set(paths(all)).size).toBe(long.length - 3);
    expect(p.predict(query)).toHaveLength(long.length - 3);
  });
});
