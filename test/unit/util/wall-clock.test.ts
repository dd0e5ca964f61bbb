import { describe, expect, it } from "vitest";
import { nowNanos } from "../../../snapshotter/util/wall-clock.js";

describe("nanosecond wall clock", () => {
  it("agrees with Date.now() to the millisecond and resolves below it", () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const readings = Array.from({ length: 1000 }, () => nowNanos());
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    for (const r of readings) {
      expect(r).toBeGreaterThanOrEqual(before - 1_000_000n);
      expect(r).toBeLessThanOrEqual(after + 1_000_000n);
    }
    // a thousand readings in well under a millisecond each: most differ below the millisecond
    const subMs = new Set(readings.map((r) => r % 1_000_000n));
    expect(subMs.size).toBeGreaterThan(100);
    for (let i = 1; i < readings.length; i++) expect(readings[i]).toBeGreaterThanOrEqual(readings[i - 1] as bigint);
  });
});
