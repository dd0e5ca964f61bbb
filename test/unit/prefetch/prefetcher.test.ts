// The prefetcher with a predictor that answers a few files a call
// (Predictor.perCall, as the GRU does): the plan is asked for again, one call
// a turn of the event loop, until the predictor has nothing new, and every
// predicted file is queued once, in predicted order.
import { setImmediate as turn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { AheadOptions, FileRanges, LayerIndex } from "../../../snapshotter/layer/layer-index.js";
import type { PredictQuery, PredictedFile, Predictor } from "../../../snapshotter/predict/predictor.js";
import { Prefetcher } from "../../../snapshotter/prefetch/prefetcher.js";
import { FetchScheduler } from "../../../snapshotter/prefetch/scheduler.js";

const L = "sha256:base";
const files = Array.from({ length: 250 }, (_, i) => `f${i}`);

/** Answers `files` in order, at most `perCall` more than its previous answer to the same query. */
class SlowPredictor implements Predictor {
  readonly name = "slow";
  readonly calls: number[] = [];
  #answered = 0;
  constructor(readonly perCall: number) {}
  async train(): Promise<void> {}
  predict(q: PredictQuery): PredictedFile[] {
    this.calls.push(q.limit);
    this.#answered = Math.min(q.limit, this.#answered + this.perCall, files.length);
    return files.slice(0, this.#answered).map((path) => ({ layer: L, path, ranges: [{ offset: 0, length: 10 }], confidence: 0.9 }));
  }
}

/** A layer index that only records what the prefetcher queued. */
function recordingIndex(queued: { path: string; priority: string }[]): LayerIndex {
  const index = {
    digest: L,
    fetchAhead(batch: readonly FileRanges[], opts: AheadOptions): number {
      for (const f of batch) queued.push({ path: f.path, priority: opts.priority });
      return batch.length * 10;
    },
  };
  return index as unknown as LayerIndex;
}

async function settle(p: SlowPredictor): Promise<void> {
  for (let n = -1; n !== p.calls.length; ) {
    n = p.calls.length;
    await turn();
  }
}

describe("prefetcher with a predictor that answers a few files a call", () => {
  it("queues the first answer at once, then asks again a turn at a time until the predictor has no more", async () => {
    const predictor = new SlowPredictor(40);
    const queued: { path: string; priority: string }[] = [];
    const prefetcher = new Prefetcher({ scheduler: new FetchScheduler(), predictor: () => predictor, layerIndex: () => recordingIndex(queued), settings: { granularity: 16 } });
    prefetcher.imagePulling({ manifest: "sha256:m", layers: [L] });
    // synchronously: one call, its 40 files queued
    expect(predictor.calls).toHaveLength(1);
    expect(queued.map((q) => q.path)).toEqual(files.slice(0, 40));
    await settle(predictor);
    expect(queued.map((q) => q.path)).toEqual(files);
    // 250 files, 40 a call: 7 calls that brought something, one that did not
    expect(predictor.calls).toHaveLength(8);
    expect(queued.slice(0, 64).every((q) => q.priority === "soon")).toBe(true);
    // a batch (16 files) that starts among the first 64 is "soon" as a whole
    expect(queued.slice(64 + 16).every((q) => q.priority === "later")).toBe(true);
    expect(prefetcher.status()[0]?.predictedFiles).toBe(250);
  });

  it("stops asking once the plan is over", async () => {
    const predictor = new SlowPredictor(10);
    const queued: { path: string; priority: string }[] = [];
    const prefetcher = new Prefetcher({ scheduler: new FetchScheduler(), predictor: () => predictor, layerIndex: () => recordingIndex(queued) });
    prefetcher.containerStarting(7, { layers: [L], args: ["run"], cwd: "/", env: {} });
    await turn();
    await turn();
    const asked = predictor.calls.length;
    expect(asked).toBeGreaterThan(1);
    prefetcher.containerEnded(7);
    await settle(predictor);
    expect(predictor.calls).toHaveLength(asked);
    expect(queued.length).toBe(asked * 10);
  });
});
