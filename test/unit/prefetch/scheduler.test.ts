import { describe, expect, it } from "vitest";
import type { FetchJob, FetchPriority } from "../../../snapshotter/fetch/fetch-queue.js";
import { FetchScheduler } from "../../../snapshotter/prefetch/scheduler.js";

const deferred = (): { promise: Promise<void>; resolve: () => void } => {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

/** A job that records when it starts and waits for `wait`. */
function job(log: string[], name: string, priority: FetchPriority, opts: { bytes?: number; wait?: Promise<void>; plan?: FetchJob["plan"]; rank?: number } = {}): FetchJob {
  return {
    priority,
    ...(opts.plan ? { plan: opts.plan } : {}),
    ...(opts.rank !== undefined ? { rank: opts.rank } : {}),
    pendingBytes: () => opts.bytes ?? 100,
    run: async () => {
      log.push(name);
      await opts.wait;
    },
  };
}

describe("FetchScheduler", () => {
  it("runs predicted jobs before speculative ones, soon before later, in submitted order", async () => {
    const s = new FetchScheduler({ concurrency: 1 });
    const log: string[] = [];
    const gate = deferred();
    s.submit([job(log, "first", "later", { wait: gate.promise })]);
    s.submit([job(log, "spec1", "speculative"), job(log, "spec2", "speculative")]);
    s.submit([job(log, "later1", "later"), job(log, "soon1", "soon"), job(log, "soon2", "soon")]);
    expect(log).toEqual(["first"]);
    gate.resolve();
    await s.idle();
    expect(log).toEqual(["first", "soon1", "soon2", "later1", "spec1", "spec2"]);
  });

  it("runs queued jobs of one priority by their rank in the plan, whatever order their layers opened in", async () => {
    const s = new FetchScheduler({ concurrency: 1 });
    const log: string[] = [];
    const gate = deferred();
    s.submit([job(log, "running", "soon", { wait: gate.promise })]);
    s.submit([job(log, "whole layer", "soon")]); // unranked: after every ranked job
    // the base layer opened first: its files 0, 1 and 40; the python layer later: its files 2 and 3
    s.submit([job(log, "base0", "soon", { rank: 0 }), job(log, "base1", "soon", { rank: 1 }), job(log, "base40", "soon", { rank: 40 })]);
    s.submit([job(log, "python2", "soon", { rank: 2 }), job(log, "python2b", "soon", { rank: 2 }), job(log, "python3", "soon", { rank: 3 })]);
    s.submit([job(log, "headers", "soon", { rank: 0 })]);
    gate.resolve();
    await s.idle();
    expect(log).toEqual(["running", "base0", "headers", "base1", "python2", "python2b", "python3", "base40", "whole layer"]);
  });

  it("runs the newest speculative batch first and drops the oldest beyond its queue bound; a failing job stops nothing", async () => {
    const s = new FetchScheduler({ concurrency: 1, speculativeQueue: 2 });
    const log: string[] = [];
    const gate = deferred();
    s.submit([{ priority: "speculative", pendingBytes: () => 1, run: async () => { log.push("run"); await gate.promise; throw new Error("registry gone"); } }]);
    s.submit([job(log, "old", "speculative")]);
    s.submit([job(log, "new1", "speculative"), job(log, "new2", "speculative")]);
    gate.resolve();
    await s.idle();
    expect(log).toEqual(["run", "new1", "new2"]);
    expect(s.stats().dropped).toBe(1);
  });

  it("never makes a demand fetch wait, and runs fewer jobs while reads wait", async () => {
    const s = new FetchScheduler({ concurrency: 3, concurrencyWhileDemand: 1 });
    const log: string[] = [];
    const gates = [deferred(), deferred(), deferred(), deferred()];
    const read = deferred();
    let demandDone = false;
    // a read is waiting: only one queued job may run
    const demand = s.demand(async () => {
      await read.promise;
      demandDone = true;
      return 42;
    });
    s.submit(gates.map((g, i) => job(log, `p${i}`, "soon", { wait: g.promise })));
    expect(log).toEqual(["p0"]);
    expect(s.stats().demandInFlight).toBe(1);
    // a second read starts at once although three jobs are queued
    let second = false;
    const other = s.demand(async () => {
      second = true;
      return 1;
    });
    expect(second).toBe(true);
    await other;
    read.resolve();
    expect(await demand).toBe(42);
    expect(demandDone).toBe(true);
    // reads done: up to three run
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(["p0", "p1", "p2"]);
    for (const g of gates) g.resolve();
    await s.idle();
    expect(log).toEqual(["p0", "p1", "p2", "p3"]);
  });

  it("keeps a plan within its byte budget and drops its jobs when it is cancelled", async () => {
    const s = new FetchScheduler({ concurrency: 1 });
    const log: string[] = [];
    const plan = s.plan("pull", 250);
    const gate = deferred();
    s.submit([job(log, "a", "soon", { plan, bytes: 100, wait: gate.promise }), job(log, "b", "soon", { plan, bytes: 100 }), job(log, "c", "soon", { plan, bytes: 100 }), job(log, "d", "soon", { plan, bytes: 50 })]);
    gate.resolve();
    await s.idle();
    expect(log).toEqual(["a", "b", "d"]); // c would have gone over 250
    expect(plan.bytesLeft).toBe(0);
    const other = s.plan("container", 1000);
    const hold = deferred();
    s.submit([job(log, "x", "later", { plan: other, wait: hold.promise }), job(log, "y", "later", { plan: other })]);
    other.cancel();
    hold.resolve();
    await s.idle();
    expect(log).toEqual(["a", "b", "d", "x"]);
    expect(s.stats().startedBytes.soon).toBe(250);
  });

  it("skips a job whose bytes were fetched meanwhile", async () => {
    const s = new FetchScheduler();
    const log: string[] = [];
    s.submit([job(log, "empty", "soon", { bytes: 0 }), job(log, "full", "soon")]);
    await s.idle();
    expect(log).toEqual(["full"]);
  });
});
