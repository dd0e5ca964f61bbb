import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { LayerCache } from "../../../snapshotter/cache/layer-cache.js";
import { CachedBlob } from "../../../snapshotter/fetch/cached-blob.js";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const newDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "augur-cache-"));
  dirs.push(d);
  return d;
};
const digestOf = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const L1 = `sha256:${"1".repeat(64)}`;
const L2 = `sha256:${"2".repeat(64)}`;

describe("LayerCache", () => {
  it("serves a range only when stored chunks cover all of it", async () => {
    const cache = new LayerCache(newDir(), 1 << 20);
    await cache.storeRange(L1, 0, Buffer.from("abcdef"));
    await cache.storeRange(L1, 6, Buffer.from("ghij"));
    expect((await cache.readRange(L1, 2, 6))?.toString()).toBe("cdefgh");
    expect(await cache.readRange(L1, 8, 4)).toBeUndefined(); // bytes 10-11 were never stored
    expect(await cache.readRange(L2, 0, 1)).toBeUndefined();
    const s = cache.status();
    expect(s.files.chunks).toBe(2);
    expect(s.usedBytes).toBe(10);
    expect(s.hits).toBe(1);
    expect(s.misses).toBe(2);
  });

  it("publishes a whole blob only on commit, through wip/", async () => {
    const dir = newDir();
    const cache = new LayerCache(dir, 1 << 20);
    const data = randomBytes(5000);
    const w = cache.blobWriter(digestOf(data));
    await w.write(data.subarray(0, 1000));
    await w.write(data.subarray(1000));
    expect(await cache.blobPath(digestOf(data))).toBeUndefined();
    expect(readdirSync(join(dir, "wip"))).toHaveLength(1);
    await w.commit();
    expect(readdirSync(join(dir, "wip"))).toHaveLength(0);
    expect((await cache.readRange(digestOf(data), 100, 50))?.equals(data.subarray(100, 150))).toBe(true);
    const aborted = cache.blobWriter(L2);
    await aborted.write(Buffer.from("x"));
    aborted.abort();
    expect(readdirSync(join(dir, "wip"))).toHaveLength(0);
    expect(await cache.blobPath(L2)).toBeUndefined();
  });

  it("evicts least recently used data first, never a pinned layer's, and keeps within its size", async () => {
    const cache = new LayerCache(newDir(), 3000);
    const unpin = cache.pin(L1);
    await cache.storeRange(L1, 0, Buffer.alloc(1000, 1));
    await cache.storeRange(L2, 0, Buffer.alloc(1000, 2));
    await cache.storeRange(L2, 1000, Buffer.alloc(1000, 3));
    await cache.readRange(L2, 0, 1000); // L2's first chunk is now the most recent
    await cache.storeRange(L2, 2000, Buffer.alloc(1000, 4));
    expect(cache.status().usedBytes).toBeLessThanOrEqual(3000);
    expect(await cache.readRange(L1, 0, 1000)).toBeDefined(); // pinned: kept although oldest
    expect(await cache.readRange(L2, 1000, 1000)).toBeUndefined(); // least recent unpinned: gone
    expect(await cache.readRange(L2, 0, 1000)).toBeDefined();
    expect(cache.status().pinnedLayers).toEqual([L1]);
    unpin();
    expect(cache.status().pinnedLayers).toEqual([]);
    expect(cache.status().evictions).toBe(1);
  });

  it("two instances share one directory; a file evicted by the other is a miss, not an error", async () => {
    const dir = newDir();
    const a = new LayerCache(dir, 1 << 20);
    await a.storeRange(L1, 0, Buffer.from("shared"));
    await a.storeIndex(L1, Buffer.from("index"));
    const b = new LayerCache(dir, 1 << 20); // scans what a wrote
    expect((await b.readRange(L1, 0, 6))?.toString()).toBe("shared");
    expect((await b.readIndex(L1))?.toString()).toBe("index");
    await a.dropLayer(L1);
    expect(await b.readRange(L1, 0, 6)).toBeUndefined();
  });

  it("drops stale wip files at start and refuses a bad digest or size", () => {
    const dir = newDir();
    new LayerCache(dir, 100);
    const stale = join(dir, "wip", "dead-writer");
    writeFileSync(stale, "x");
    const old = new Date(Date.now() - 48 * 3600 * 1000);
    utimesSync(stale, old, old);
    new LayerCache(dir, 100);
    expect(readdirSync(join(dir, "wip"))).toHaveLength(0);
    expect(() => new LayerCache(dir, 0)).toThrow(/cache size must be positive/);
    const cache = new LayerCache(dir, 100);
    expect(() => cache.pin("sha256:nothex")).toThrow(/not a sha256 digest/);
  });
});

describe("CachedBlob", () => {
  it("reads from the cache when it can and keeps only what was verified", async () => {
    const cache = new LayerCache(newDir(), 1 << 20);
    const data = randomBytes(4096);
    const asked: [number, number][] = [];
    const blob = new CachedBlob(cache, L1, data.length, async (off, len) => {
      asked.push([off, len]);
      return data.subarray(off, off + len);
    });
    expect((await blob.read(0, 1024)).equals(data.subarray(0, 1024))).toBe(true);
    expect((await blob.read(0, 1024)).length).toBe(1024);
    expect(asked).toHaveLength(2); // nothing verified yet, so nothing kept
    blob.verified(0, data.subarray(0, 1024));
    await new Promise((r) => setTimeout(r, 50));
    expect((await blob.read(0, 1024)).equals(data.subarray(0, 1024))).toBe(true);
    expect(asked).toHaveLength(2);
    expect(blob.fetchedBytes).toBe(2048);
    expect((await blob.read(4000, 500)).length).toBe(96); // clipped at the blob's end
  });

  it("reads several ranges: the cache's from disk, the rest from the origin in one request", async () => {
    const cache = new LayerCache(newDir(), 1 << 20);
    const data = randomBytes(8192);
    const single: [number, number][] = [];
    const multi: [number, number][][] = [];
    const blob = new CachedBlob(cache, L1, data.length, {
      fetch: async (off, len) => (single.push([off, len]), data.subarray(off, off + len)),
      fetchRanges: (ranges) => (multi.push(ranges.map((r) => [r.offset, r.length])), ranges.map(async (r) => data.subarray(r.offset, r.offset + r.length))),
    });
    await cache.storeRange(L1, 1000, data.subarray(1000, 2000));
    const got = await Promise.all(blob.readRanges([{ offset: 5000, length: 100 }, { offset: 1200, length: 300 }, { offset: 8000, length: 500 }]));
    expect(got.map((b) => b.length)).toEqual([100, 300, 192]); // the last clipped at the blob's end
    expect(got[0]?.equals(data.subarray(5000, 5100))).toBe(true);
    expect(got[1]?.equals(data.subarray(1200, 1500))).toBe(true);
    expect(multi).toEqual([[[5000, 100], [8000, 192]]]);
    expect(single).toEqual([]);
    expect(blob.fetchedBytes).toBe(292);
  });
});
