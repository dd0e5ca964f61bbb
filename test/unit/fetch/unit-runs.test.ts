import { describe, expect, it } from "vitest";
import { adjacentRuns, disjointRuns, packedRuns, rankedRuns } from "../../../snapshotter/fetch/unit-runs.js";

const bounds = (i: number) => ({ start: i * 100, end: i * 100 + 100 });

describe("unit runs", () => {
  it("groups adjacent units into requests of bounded size, the most useful first", () => {
    expect(rankedRuns([7, 2, 3, 4, 8, 3], bounds, 250)).toEqual([[7, 8], [2, 3], [4]]);
  });
  it("treats units that share bytes (one gzip member, a boundary byte) as adjacent", () => {
    const shared = (i: number) => [{ start: 0, end: 50 }, { start: 0, end: 50 }, { start: 49, end: 90 }, { start: 95, end: 120 }][i] as { start: number; end: number };
    expect(adjacentRuns([0, 1, 2, 3], shared, Infinity)).toEqual([[0, 1, 2], [3]]);
  });
  it("packs runs into requests in their ranked order, bounded in bytes and in ranges", () => {
    const runs = [[7, 8], [2], [4], [11], [13], [0]];
    expect(packedRuns(runs, bounds, 400)).toEqual([[[7, 8], [2], [4]], [[11], [13], [0]]]);
    expect(packedRuns(runs, bounds, 10_000, 4)).toEqual([[[7, 8], [2], [4], [11]], [[13], [0]]]);
    expect(packedRuns([[1, 2, 3, 4, 5]], bounds, 200)).toEqual([[[1, 2, 3, 4, 5]]]); // a run longer than a request goes alone
  });
  it("joins the runs of a request whose bytes meet, so no two ranges overlap", () => {
    const shared = (i: number) => ({ start: i * 100 - (i > 0 ? 1 : 0), end: i * 100 + 100 }); // each unit shares a byte with the one before
    expect(disjointRuns([[5], [1, 2], [3], [8]], shared)).toEqual([[5], [1, 2, 3], [8]]);
    expect(disjointRuns([[1], [3], [2]], shared)).toEqual([[1, 2, 3]]); // a join that reaches a run joined before
    expect(disjointRuns([[4], [1]], bounds)).toEqual([[4], [1]]);
  });
});
