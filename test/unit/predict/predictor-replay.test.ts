import { describe, it, expect } from "vitest";
import { TraceHistory } from "../../../snapshotter/predict/history.js";
import { alignedPosition, ReplayPredictor, SKIPPED_FACTOR } from "../../../snapshotter/predict/predictor-replay.js";
import { similarity } from "../../../snapshotter/trace/workload.js";
import { makeTrace, paths } from "./helpers.js";

const key = (path: string, layer = "sha256:L"): { layer: string; path: string } => ({ layer, path });

describe("replay predictor", () => {
  const a1 = makeTrace({ id: "a1", started: 1, layers: ["sha256:L"], args: ["app"], files: ["a", "b", "c", "d", "e"].map((path) => ({ path, size: 10, reads: [[0, 10]] })) });
  const b1 = makeTrace({ id: "b1", started: 2, layers: ["sha256:L"], args: ["other"], files: ["x", "y", "z"] });

  it("replays the most similar trace's files in its order, from where the container is", async () => {
    const p = new ReplayPredictor();
    await p.train(new TraceHistory([a1, b1]));
    const workload = a1.workload!;
    const all = p.predict({ workload, accessed: [], limit: 10 });
    expect(paths(all)).toEqual(["a", "b", "c", "d", "e"]);
    expect(all[0]?.confidence).toBe(1);
    expect(all[0]?.ranges).toEqual([{ offset: 0, length: 10 }]);
    expect(paths(p.predict({ workload, accessed: [key("a"), key("b")], limit: 10 }))).toEqual(["c", "d", "e"]);
    expect(paths(p.predict({ workload, accessed: [key("a"), key("b")], limit: 2 }))).toEqual(["c", "d"]);
    // jumped ahead to c: what follows c first, then what was skipped, less sure
    const jumped = p.predict({ workload, accessed: [key("c")], limit: 10 });
    expect(paths(jumped)).toEqual(["d", "e", "a", "b"]);
    expect(jumped[2]?.confidence).toBe(SKIPPED_FACTOR);
  });

  it("prefers the newest of equally similar traces and scales confidence by similarity", async () => {
    const newer = makeTrace({ id: "a2", started: 5, layers: ["sha256:L"], args: ["app"], files: ["a", "c", "b"] });
    const p = new ReplayPredictor();
    await p.train(new TraceHistory([a1, newer]));
    expect(paths(p.predict({ workload: a1.workload!, accessed: [], limit: 10 }))).toEqual(["a", "c", "b"]);
    // another command on the same layer: same trace chosen, confidence = similarity
    const query = { layers: ["sha256:L"], args: ["app", "--debug"], cwd: "/", env: {} };
    const out = p.predict({ workload: query, accessed: [], limit: 10 });
    expect(out[0]?.confidence).toBeCloseTo(similarity(query, newer.workload!, undefined), 10);
    expect(out[0]?.confidence).toBeLessThan(1);
  });

  it("predicts only files of the query's layers, and nothing for a workload sharing none", async () => {
    const mixed = makeTrace({ id: "m", started: 1, layers: ["sha256:L", "sha256:M"], files: [{ path: "a" }, { path: "m1", layer: "sha256:M" }, { path: "b" }] });
    const p = new ReplayPredictor();
    await p.train(new TraceHistory([mixed]));
    expect(paths(p.predict({ workload: { layers: ["sha256:L"], args: ["run"], cwd: "/", env: {} }, accessed: [], limit: 10 }))).toEqual(["a", "b"]);
    expect(p.predict({ workload: { layers: ["sha256:Q"], args: ["run"], cwd: "/", env: {} }, accessed: [], limit: 10 })).toEqual([]);
  });

  it("aligns on the median position of the latest accessed files it knows", () => {
    const order = new Map(["a", "b", "c", "d", "e", "f"].map((p, i) => [`sha256:L\0${p}`, i]));
    expect(alignedPosition(order, [])).toBe(-1);
    expect(alignedPosition(order, [key("zz")])).toBe(-1);
    expect(alignedPosition(order, [key("a"), key("b"), key("c")])).toBe(1);
    // one file far out of place does not move the position much
    expect(alignedPosition(order, [key("a"), key("b"), key("f")])).toBe(1);
  });
});
