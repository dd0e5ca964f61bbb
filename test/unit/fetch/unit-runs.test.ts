import { describe, expect, it } from "vitest";
import { adjacentRuns, rankedRuns } from "../../../snapshotter/fetch/unit-runs.js";

const bounds = (i: number) => ({ start: i * 100, end: i * 100 + 100 });

describe("unit runs", () => {
  it("groups adjacent units into requests of bounded size, the most useful first", () => {
    expect(rankedRuns([7, 2, 3, 4, 8, 3], bounds, 250)).toEqual([[7, 8], [2, 3], [4]]);
  });
  it("treats units that share bytes (one gzip member, a boundary byte) as adjacent", () => {
    const shared = (i: number) => [{ start: 0, end: 50 }, { start: 0, end: 50 }, { start: 49, end: 90 }, { start: 95, end: 120 }][i] as { start: number; end: number };
    expect(adjacentRuns([0, 1, 2, 3], shared, Infinity)).toEqual([[0, 1, 2], [3]]);
  });
});
