import { describe, it, expect } from "vitest";
import { SpeculativeFetches, speculativeRequests } from "../../../snapshotter/layer/speculative-fetches.js";

const deferred = (): { promise: Promise<void>; resolve: () => void } => {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

describe("SpeculativeFetches", () => {
  it("runs at most `concurrency` tasks, the newest batch first, in order within a batch", async () => {
    const q = new SpeculativeFetches(1, 10);
    const started: string[] = [];
    const gate = deferred();
    const task = (name: string, wait?: Promise<void>) => async () => {
      started.push(name);
      await wait;
    };
    q.add([task("a", gate.promise)]);
    q.add([task("b1"), task("b2")]);
    q.add([task("c1"), task("c2")]);
    expect(started).toEqual(["a"]);
    expect(q.pending).toBe(5);
    gate.resolve();
    await q.idle();
    expect(started).toEqual(["a", "c1", "c2", "b1", "b2"]);
  });

  it("drops the oldest waiting tasks beyond its bound, and a failing task stops nothing", async () => {
    const q = new SpeculativeFetches(1, 2);
    const started: string[] = [];
    const gate = deferred();
    q.add([async () => { started.push("run"); await gate.promise; throw new Error("registry gone"); }]);
    q.add([async () => void started.push("old")]);
    q.add([async () => void started.push("new1"), async () => void started.push("new2")]);
    gate.resolve();
    await q.idle();
    expect(started).toEqual(["run", "new1", "new2"]);
  });
});

describe("speculativeRequests", () => {
  const bounds = (i: number) => ({ start: i * 100, end: i * 100 + 100 });
  it("groups adjacent units into requests of bounded size, the most useful first", () => {
    expect(speculativeRequests([7, 2, 3, 4, 8, 3], bounds, 250)).toEqual([[7, 8], [2, 3], [4]]);
  });
});
