// The cache on a full disk (a real 1 MiB tmpfs): a chunk or a whole blob that
// does not fit fails with an error naming the directory and ENOSPC, leaves no
// torn or partial file, and what was stored before stays readable.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { LayerCache } from "../../snapshotter/cache/layer-cache.js";
import { removeScratch, runOk, scratchDir } from "../harness/processes.js";

let dir: string;
let cacheDir: string;
const L1 = `sha256:${"1".repeat(64)}`;
const L2 = `sha256:${"2".repeat(64)}`;

beforeAll(async () => {
  dir = scratchDir("as-fulldisk-");
  cacheDir = join(dir, "cache");
  await runOk("mkdir", ["-p", cacheDir]);
  await runOk("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", cacheDir]);
});

afterAll(async () => {
  await removeScratch(dir); // unmounts the tmpfs first
});

describe("a full cache disk", () => {
  it("refuses what does not fit with a clear error, and keeps what it had", async () => {
    const cache = new LayerCache(cacheDir, 1 << 30); // a bound larger than the disk: the disk fills first
    try {
      const small = randomBytes(64 << 10);
      await cache.storeRange(L1, 0, small);
      await expect(cache.storeRange(L1, small.length, randomBytes(2 << 20))).rejects.toThrow(new RegExp(`cache directory ${cacheDir} is out of space \\(ENOSPC\\)`));
      const w = cache.blobWriter(L2);
      const writing = (async () => {
        for (let i = 0; i < 32; i++) await w.write(randomBytes(64 << 10));
        await w.commit();
      })();
      await expect(writing).rejects.toThrow(/is out of space \(ENOSPC\) storing layer blob sha256:2{64}/);
      w.abort();
      // nothing torn or partial: no file for the failed chunk or blob, wip/ empty
      expect(readdirSync(join(cacheDir, "wip"))).toEqual([]);
      expect(readdirSync(join(cacheDir, "chunks/sha256", "1".repeat(64)))).toEqual([`0-${small.length}`]);
      expect(await cache.blobPath(L2)).toBeUndefined();
      expect((await cache.readRange(L1, 0, small.length))?.equals(small)).toBe(true);
      expect(cache.status().usedBytes).toBe(small.length);
      // once there is room again, it stores
      await cache.evictLayer(L1);
      await cache.storeRange(L2, 0, randomBytes(256 << 10));
      expect(cache.status().usedBytes).toBe(256 << 10);
    } finally {
      cache.close();
    }
  });
});
