import { describe, it, expect } from "vitest";
import { TraceHistory } from "../../../snapshotter/predict/history.js";
import { MarkovPredictor } from "../../../snapshotter/predict/predictor-markov.js";
import { makeTrace, paths } from "./helpers.js";

const L = "sha256:L";
const key = (path: string, layer = L): { layer: string; path: string } => ({ layer, path });
const trace = (id: string, started: number, files: string[], args = ["run"]): ReturnType<typeof makeTrace> =>
  makeTrace({ id, started, layers: [L], args, files });

describe("markov predictor", () => {
  it("learns A -> B -> C and rolls it out", async () => {
    const p = new MarkovPredictor();
    await p.train(new TraceHistory([trace("1", 1, ["A", "B", "C", "D"]), trace("2", 2, ["A", "B", "C", "D"])]));
    const workload = { layers: [L], args: ["other"], cwd: "/", env: {} };
    expect(paths(p.predict({ workload, accessed: [key("A")], limit: 10 }))).toEqual(["B", "C", "D"]);
    expect(paths(p.predict({ workload, accessed: [key("A"), key("B")], limit: 1 }))).toEqual(["C"]);
  });

  it("uses longer contexts where one file alone is ambiguous", async () => {
    const p = new MarkovPredictor();
    await p.train(new TraceHistory([trace("1", 1, ["X", "B", "C"]), trace("2", 2, ["Y", "B", "D"]), trace("3", 3, ["Y", "B", "D"])]));
    const workload = { layers: [L], args: ["run"], cwd: "/", env: {} };
    expect(paths(p.predict({ workload, accessed: [key("X"), key("B")], limit: 1 }))).toEqual(["C"]);
    expect(paths(p.predict({ workload, accessed: [key("Y"), key("B")], limit: 1 }))).toEqual(["D"]);
    // after B alone: D followed B twice, C once
    expect(paths(p.predict({ workload, accessed: [key("B")], limit: 1 }))).toEqual(["D"]);
    // nothing accessed: the most common first file, then what follows it
    expect(paths(p.predict({ workload, accessed: [], limit: 3 }))).toEqual(["Y", "B", "D"]);
  });

  it("never repeats nor predicts accessed files, stays in the query's layers, and falls back to popular files", async () => {
    const p = new MarkovPredictor();
    const mixed = makeTrace({ id: "m", started: 1, layers: [L, "sha256:M"], files: ["A", { path: "M1", layer: "sha256:M" }, "B", "A2"] });
    await p.train(new TraceHistory([mixed, trace("2", 2, ["C", "A"])]));
    const out = p.predict({ workload: { layers: [L], args: ["run"], cwd: "/", env: {} }, accessed: [key("A")], limit: 10 });
    const names = paths(out);
    expect(names).not.toContain("A");
    expect(names).not.toContain("M1");
    expect(new Set(names).size).toBe(names.length);
    expect(names.sort()).toEqual(["A2", "B", "C"]);
  });
});
