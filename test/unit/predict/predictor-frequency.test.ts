import { describe, it, expect } from "vitest";
import { TraceHistory } from "../../../snapshotter/predict/history.js";
import { FrequencyPredictor } from "../../../snapshotter/predict/predictor-frequency.js";
import { similarity } from "../../../snapshotter/trace/workload.js";
import { makeTrace, paths } from "./helpers.js";

describe("frequency predictor", () => {
  it("ranks files by the similarity-weighted share of traces that touched them, then by position", async () => {
    const same = makeTrace({ id: "s", started: 1, layers: ["sha256:L"], args: ["app"], files: ["a", "b", "d"].map((path) => ({ path, size: 10, reads: [[0, 10]] })) });
    const near = makeTrace({ id: "n", started: 2, layers: ["sha256:L"], args: ["app", "--other"], files: ["c", "a"].map((path) => ({ path, size: 10, reads: [[0, 10]] })) });
    const far = makeTrace({ id: "f", started: 3, layers: ["sha256:Z"], args: ["app"], files: ["z"] });
    const p = new FrequencyPredictor();
    await p.train(new TraceHistory([same, near, far]));
    const w = similarity(same.workload!, near.workload!, new Map([["sha256:L", 20]]));
    expect(w).toBeGreaterThan(0);
    expect(w).toBeLessThan(1);
    const out = p.predict({ workload: same.workload!, accessed: [], limit: 10 });
    // a: 1 + w; b, d: 1 (b before d: touched earlier); c: w; z shares no layer
    expect(paths(out)).toEqual(["a", "b", "d", "c"]);
    const total = 1 + w;
    expect(out.map((f) => f.confidence)).toEqual([1, 1 / total, 1 / total, w / total].map((c) => expect.closeTo(c, 10) as unknown as number));
    expect(paths(p.predict({ workload: same.workload!, accessed: [{ layer: "sha256:L", path: "a" }], limit: 2 }))).toEqual(["b", "d"]);
  });

  it("lets only the k most similar traces vote", async () => {
    const mine = makeTrace({ id: "m", started: 1, layers: ["sha256:L"], args: ["app"], files: ["a"] });
    const other = makeTrace({ id: "o", started: 2, layers: ["sha256:L"], args: ["x"], files: ["b"] });
    const p = new FrequencyPredictor(1);
    await p.train(new TraceHistory([mine, other]));
    expect(paths(p.predict({ workload: mine.workload!, accessed: [], limit: 10 }))).toEqual(["a"]);
  });
});
