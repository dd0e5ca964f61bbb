import { describe, expect, it } from "vitest";
import { StreamOrder } from "../../../snapshotter/remote/stream-order.js";

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("StreamOrder", () => {
  it("without a ranking every stream starts at once", async () => {
    const order = new StreamOrder();
    const started: string[] = [];
    for (const l of ["a", "b", "c"]) void order.turn(l).then(() => started.push(l));
    await tick();
    expect(started).toEqual(["a", "b", "c"]);
  });

  it("with a ranking, streams go one at a time, read-first first, layers nobody reads last", async () => {
    const rank: Record<string, number> = { base: 0, python: 1 };
    const order = new StreamOrder((l) => rank[l]);
    const started: string[] = [];
    const done: Record<string, () => void> = {};
    // containerd prepares layers bottom first; the toolchain layer is not read by the workload
    for (const l of ["base", "toolchain", "python"]) void order.turn(l).then((end) => { started.push(l); done[l] = end; });
    await tick();
    expect(started).toEqual(["base"]);
    expect(order.waiting).toEqual(["python", "toolchain"]);
    done.base?.();
    done.base?.(); // ending twice changes nothing
    await tick();
    expect(started).toEqual(["base", "python"]);
    done.python?.();
    await tick();
    expect(started).toEqual(["base", "python", "toolchain"]);
    const late = order.turn("other");
    done.toolchain?.();
    await late;
    expect(order.waiting).toEqual([]);
  });
});
