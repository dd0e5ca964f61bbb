import { describe, expect, it } from "vitest";
import { IndexLoads } from "../../../snapshotter/remote/index-loads.js";

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("IndexLoads", () => {
  it("one load at a time: the layers Prepares wait for, then early ones by rank, unranked last", async () => {
    const rank: Record<string, number> = { python: 0, base: 1 };
    const loads = new IndexLoads((l) => rank[l]);
    const started: string[] = [];
    const done: Record<string, () => void> = {};
    const take = (l: string, urgent: boolean): void => void loads.turn(l, urgent).then((end) => { started.push(l); done[l] = end; });
    take("first", true); // the layer whose Prepare came
    take("tools", false);
    take("base", false);
    take("python", false);
    await tick();
    expect(started).toEqual(["first"]);
    expect(loads.waiting).toEqual(["python", "base", "tools"]);
    take("second", true); // a Prepare that came meanwhile goes before the early ones
    loads.hurry("base"); // the Prepare of a layer opened early: as urgent, and queued before "second"
    done.first?.();
    done.first?.(); // ending twice changes nothing
    await tick();
    expect(started).toEqual(["first", "base"]);
    expect(loads.waiting).toEqual(["second", "python", "tools"]);
    for (const l of ["base", "second", "python"]) {
      done[l]?.();
      await tick();
    }
    expect(started).toEqual(["first", "base", "second", "python", "tools"]);
    done.tools?.();
    expect(loads.waiting).toEqual([]);
  });

  it("without a ranking, early loads go in the order they came", async () => {
    const loads = new IndexLoads();
    const started: string[] = [];
    for (const l of ["a", "b", "c"]) void loads.turn(l, false).then((end) => { started.push(l); end(); });
    for (let i = 0; i < 4; i++) await tick();
    expect(started).toEqual(["a", "b", "c"]);
  });
});
