import { describe, it, expect } from "vitest";
import { FILE_AHEAD_BYTES, DIR_AHEAD_BYTES } from "../../../snapshotter/layer/speculative-fetches.js";
import { TraceHistory } from "../../../snapshotter/predict/history.js";
import type { CatalogFile, LayerCatalog } from "../../../snapshotter/predict/predictor.js";
import { FOLLOWING_CONFIDENCE, LocalityPredictor, SIBLING_CONFIDENCE } from "../../../snapshotter/predict/predictor-locality.js";
import { paths } from "./helpers.js";

const KiB = 1024;
const L = "sha256:L";
const catalogOf = (layers: Record<string, CatalogFile[]>): LayerCatalog => ({ files: (layer) => layers[layer] });
const workload = { layers: [L, "sha256:unknown"], args: [], cwd: "/", env: {} };

describe("locality predictor", () => {
  const files: CatalogFile[] = [
    { path: "a/1.py", size: 100 * KiB },
    { path: "a/2.py", size: 100 * KiB },
    { path: "a/3.py", size: 100 * KiB },
    { path: "b/big.so", size: 20 << 20 },
    { path: "b/x", size: 100 * KiB },
    { path: "a/4.py", size: 100 * KiB },
    { path: "a/5.py", size: 300 * KiB },
  ];

  it("predicts what follows in layer order, then a small file's nearest small siblings", async () => {
    const p = new LocalityPredictor();
    await p.train(new TraceHistory([], catalogOf({ [L]: files })));
    const out = p.predict({ workload, accessed: [{ layer: L, path: "a/2.py" }], limit: 10 });
    // following: a/3.py (100 KiB of the 512 KiB read-ahead), then b/big.so starts within it;
    // siblings of a/2.py among a/'s small files: a/1.py and a/3.py (distance 1, a/3.py taken), a/4.py (distance 4); a/5.py is not small
    expect(paths(out)).toEqual(["a/3.py", "b/big.so", "a/1.py", "a/4.py"]);
    expect(out.map((f) => f.confidence)).toEqual([FOLLOWING_CONFIDENCE, FOLLOWING_CONFIDENCE, SIBLING_CONFIDENCE, SIBLING_CONFIDENCE]);
    expect(out[1]?.ranges).toEqual([{ offset: 0, length: FILE_AHEAD_BYTES }]);
    expect(out[0]?.ranges).toEqual([{ offset: 0, length: 100 * KiB }]);
  });

  it("keeps siblings within the directory budget, nearest first", async () => {
    const dir: CatalogFile[] = Array.from({ length: 30 }, (_, i) => ({ path: `m/${String(i).padStart(2, "0")}`, size: 100 * KiB }));
    const p = new LocalityPredictor();
    await p.train(new TraceHistory([], catalogOf({ [L]: dir })));
    const out = p.predict({ workload, accessed: [{ layer: L, path: "m/29" }], limit: 100 });
    const fit = Math.floor(DIR_AHEAD_BYTES / (100 * KiB));
    expect(paths(out)).toEqual(Array.from({ length: fit }, (_, k) => `m/${String(28 - k).padStart(2, "0")}`));
  });

  it("predicts nothing before the first access, nor for a layer the catalog does not list", async () => {
    const p = new LocalityPredictor();
    await p.train(new TraceHistory([], catalogOf({ [L]: files })));
    expect(p.predict({ workload, accessed: [], limit: 10 })).toEqual([]);
    expect(p.predict({ workload, accessed: [{ layer: "sha256:unknown", path: "a/2.py" }], limit: 10 })).toEqual([]);
    const none = new LocalityPredictor();
    await none.train(new TraceHistory([]));
    expect(none.predict({ workload, accessed: [{ layer: L, path: "a/2.py" }], limit: 10 })).toEqual([]);
  });
});
