import { describe, expect, it } from "vitest";
import type { BlobSource } from "../../../snapshotter/fetch/blob-source.js";
import { FetchStats } from "../../../snapshotter/fetch/fetch-stats.js";
import { UnitFetcher, type UnitFormat } from "../../../snapshotter/fetch/unit-fetcher.js";
import { LayerVerificationError } from "../../../snapshotter/fetch/verification.js";
import { FetchScheduler } from "../../../snapshotter/prefetch/scheduler.js";
import { countingSource } from "../layer/helpers.js";

/** 16 units of 1000 bytes each over a blob whose unit i is all byte i; unit `bad` fails its check. */
function setup(opts: { bad?: number; alignBytes?: number } = {}) {
  const blob = Buffer.concat(Array.from({ length: 16 }, (_, i) => Buffer.alloc(1000, i)));
  const src = countingSource(blob);
  const format: UnitFormat<Buffer> = {
    digest: "sha256:test",
    count: 16,
    bounds: (i) => ({ start: i * 1000, end: (i + 1) * 1000 }),
    verify: (i, bytes) => {
      if (i === opts.bad || bytes.some((b) => b !== i)) throw new LayerVerificationError("sha256:test", `unit ${i} is bad`);
      return bytes;
    },
  };
  const stats = new FetchStats();
  const scheduler = new FetchScheduler();
  const fetcher = new UnitFetcher(format, src, scheduler, { stats, ...(opts.alignBytes ? { alignBytes: opts.alignBytes } : {}) });
  return { src, stats, scheduler, fetcher };
}

describe("UnitFetcher", () => {
  it("fetches a read's adjacent units in one request, joins fetches in flight, and keeps what it verified", async () => {
    const { src, fetcher, stats } = setup();
    const [a, b] = fetcher.get([3, 4]);
    const [again] = fetcher.get([4]); // in flight: joined, not fetched twice
    expect((await a)?.[0]).toBe(3);
    expect((await b)?.[0]).toBe(4);
    expect((await again)?.[0]).toBe(4);
    expect(src.calls).toEqual([{ offset: 3000, length: 2000 }]);
    expect(stats.readMissBytes).toBe(2000);
    expect(stats.readAgainBytes).toBe(1000);
  });

  it("a unit that fails its check fails alone, and is fetched again by the next read", async () => {
    const { src, fetcher } = setup({ bad: 5 });
    const [good, bad] = fetcher.get([4, 5]);
    expect((await good)?.[0]).toBe(4);
    await expect(bad).rejects.toThrow(/unit 5 is bad/);
    await expect(fetcher.get([5])[0]).rejects.toThrow(LayerVerificationError);
    expect(src.calls).toHaveLength(2);
  });

  it("with aligned blocks a read's request takes the whole units around it, counted as read-ahead", async () => {
    const { src, fetcher, stats } = setup({ alignBytes: 4000 });
    await fetcher.get([5])[0];
    expect(src.calls).toEqual([{ offset: 4000, length: 4000 }]); // units 4..7: block 4000-8000
    expect(stats.aheadBytes.speculative).toBe(3000);
    await fetcher.get([7])[0]; // came along
    expect(src.calls).toHaveLength(1);
    expect(stats.readHitBytes).toBe(1000);
    expect(stats.precision).toBeCloseTo(1 / 3);
  });

  it("fetches ahead through the queue, and a later read of those units counts as a hit", async () => {
    const { src, fetcher, stats, scheduler } = setup();
    fetcher.ahead({ ids: [10, 11, 2], priority: "soon", maxRequestBytes: 2000 });
    await scheduler.idle();
    expect(src.calls).toEqual([{ offset: 10000, length: 2000 }, { offset: 2000, length: 1000 }]);
    expect(stats.aheadBytes.soon).toBe(3000);
    await Promise.all(fetcher.get([10, 11, 12]));
    expect(stats.readHitBytes).toBe(2000);
    expect(stats.readMissBytes).toBe(1000);
    expect(stats.aheadUsedBy.soon).toBe(2000);
    expect(stats.recall).toBeCloseTo(2 / 3);
  });

  it("a read never waits behind a large prefetch: its fetch starts at once", async () => {
    const blob = Buffer.concat(Array.from({ length: 64 }, (_, i) => Buffer.alloc(1000, i)));
    const slow = { size: blob.length, read: async (offset: number, length: number) => {
      await new Promise((r) => setTimeout(r, 50)); // every request: 50 ms
      return blob.subarray(offset, offset + length);
    } };
    const scheduler = new FetchScheduler({ concurrency: 4 });
    const fetcher = new UnitFetcher<Buffer>({ digest: "sha256:t", count: 64, bounds: (i) => ({ start: i * 1000, end: (i + 1) * 1000 }), verify: (_i, b) => b }, slow, scheduler);
    // 60 units ahead, one request each: 15 rounds of 4, about 750 ms
    fetcher.ahead({ ids: Array.from({ length: 60 }, (_, i) => i), priority: "soon", maxRequestBytes: 1000 });
    const t0 = performance.now();
    const got = await fetcher.get([63])[0];
    const waited = performance.now() - t0;
    expect(got?.[0]).toBe(63);
    expect(waited).toBeLessThan(200); // one request's time, not the queue's
    expect(scheduler.pending).toBeGreaterThan(20); // the prefetch was still going
    await scheduler.idle();
  });

  describe("with a blob that takes several ranges in one request", () => {
    /** 64 units of 1000 bytes; readRanges resolves each range after `delays[k]` ms (default 0). */
    function multi(delays: number[] = []) {
      const blob = Buffer.concat(Array.from({ length: 64 }, (_, i) => Buffer.alloc(1000, i)));
      const calls: { offset: number; length: number }[][] = [];
      const kept: { offset: number; length: number }[] = [];
      const src: BlobSource & { takesSeveralRanges: () => boolean } = {
        size: blob.length,
        takesSeveralRanges: () => true,
        read: async (offset: number, length: number) => {
          calls.push([{ offset, length }]);
          return blob.subarray(offset, offset + length);
        },
        readRanges: (ranges: readonly { offset: number; length: number }[]) => {
          calls.push([...ranges]);
          return ranges.map((r, k) => new Promise<Buffer>((resolve) => setTimeout(() => resolve(blob.subarray(r.offset, r.offset + r.length)), delays[k] ?? 0)));
        },
        verified: (offset: number, data: Buffer) => void kept.push({ offset, length: data.length }),
      };
      const scheduler = new FetchScheduler();
      const format: UnitFormat<Buffer> = { digest: "sha256:t", count: 64, bounds: (i) => ({ start: i * 1000, end: (i + 1) * 1000 }), verify: (i, b) => {
        if (b.some((x) => x !== i)) throw new LayerVerificationError("sha256:t", `unit ${i} is bad`);
        return b;
      } };
      return { calls, kept, scheduler, src, fetcher: new UnitFetcher(format, src, scheduler) };
    }

    it("a read's separate runs go in one request, and each adjacent stretch is kept as one piece", async () => {
      const { calls, kept, fetcher } = multi();
      const got = await Promise.all(fetcher.get([3, 4, 5, 20, 40, 41]));
      expect(got.map((b) => b[0])).toEqual([3, 4, 5, 20, 40, 41]);
      expect(calls).toEqual([[{ offset: 3000, length: 3000 }, { offset: 20000, length: 1000 }, { offset: 40000, length: 2000 }]]);
      expect(kept).toEqual([{ offset: 3000, length: 3000 }, { offset: 20000, length: 1000 }, { offset: 40000, length: 2000 }]);
    });

    it("fetches ahead scattered units in few requests, most useful first, within the request size", async () => {
      const { calls, scheduler, fetcher } = multi();
      fetcher.ahead({ ids: [50, 10, 30, 31, 12, 60, 2], priority: "soon", maxRequestBytes: 4000 });
      await scheduler.idle();
      expect(calls).toEqual([
        [{ offset: 50000, length: 1000 }, { offset: 10000, length: 1000 }, { offset: 30000, length: 2000 }],
        [{ offset: 12000, length: 1000 }, { offset: 60000, length: 1000 }, { offset: 2000, length: 1000 }],
      ]);
    });

    it("does not pack runs into one job when the blob would read them one by one", async () => {
      const { calls, scheduler, fetcher, src } = multi();
      src.takesSeveralRanges = () => false;
      fetcher.ahead({ ids: [50, 10, 30], priority: "soon", maxRequestBytes: 4000 });
      await scheduler.idle();
      // one job, and so one request, a run: not one job of three requests at once
      expect(calls).toEqual([[{ offset: 50000, length: 1000 }], [{ offset: 10000, length: 1000 }], [{ offset: 30000, length: 1000 }]]);
    });

    it("a unit is served as soon as its range has arrived, before the rest of the request", async () => {
      const { fetcher } = multi([0, 300]);
      const [first, second] = fetcher.get([1, 9]);
      const t0 = performance.now();
      await first;
      expect(performance.now() - t0).toBeLessThan(150);
      expect((await second)?.[0]).toBe(9);
    });
  });
});
