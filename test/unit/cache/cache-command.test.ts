// `augur cache status|ls|evict|verify|gc` on a cache directory a running augur
// (here: a LayerCache in this process) shares.
import { afterEach, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayerCache } from "../../../snapshotter/cache/layer-cache.js";
import { cacheCommand } from "../../../snapshotter/cache/cache-command.js";

const open: LayerCache[] = [];
const dirs: string[] = [];
afterEach(() => {
  open.splice(0).forEach((c) => c.close());
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});
const digestOf = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const L1 = `sha256:${"1".repeat(64)}`;

async function setup(): Promise<{ dir: string; serving: LayerCache; blob: Buffer }> {
  const dir = mkdtempSync(join(tmpdir(), "augur-cachecmd-"));
  dirs.push(dir);
  const serving = new LayerCache(dir, 1 << 20);
  open.push(serving);
  const blob = randomBytes(3000);
  const w = serving.blobWriter(digestOf(blob));
  await w.write(blob);
  await w.commit();
  await serving.storeRange(L1, 0, Buffer.alloc(1000, 1));
  await serving.storeRange(L1, 1000, Buffer.alloc(500, 2));
  return { dir, serving, blob };
}
async function cmd(args: string[]): Promise<string> {
  let text = "";
  await cacheCommand(args, (s) => (text += s));
  return text;
}

describe("augur cache", () => {
  it("status and ls show what every augur on the directory holds", async () => {
    const { dir, serving, blob } = await setup();
    const unpin = serving.pin(L1);
    const status = JSON.parse(await cmd(["status", "--cache-dir", dir, "--json"])) as Record<string, unknown>;
    expect(status).toMatchObject({ dir, usedBytes: 4500, files: { blobs: 1, chunks: 2, indexes: 0 }, instances: 2, directoryPinnedLayers: [L1] });
    expect(await cmd(["status", "--cache-dir", dir])).toMatch(/augurs\s+1 running on it/);
    const layers = JSON.parse(await cmd(["ls", "--cache-dir", dir, "--json"])) as { layer: string; blob: boolean; chunks: number; bytes: number; pinned: boolean }[];
    expect(layers.map((l) => [l.layer, l.blob, l.chunks, l.bytes, l.pinned]).sort()).toEqual(
      [[digestOf(blob), true, 0, 3000, false], [L1, false, 2, 1500, true]].sort(),
    );
    unpin();
  });

  it("evict removes a layer unless a mount still needs it", async () => {
    const { dir, serving, blob } = await setup();
    const unpin = serving.pin(L1);
    await expect(cmd(["evict", "--cache-dir", dir, L1])).rejects.toThrow(/in use by a mount/);
    unpin();
    expect(await cmd(["evict", "--cache-dir", dir, L1])).toMatch(/evicted sha256:1+: 1\.5KiB/);
    expect(await serving.readRange(L1, 0, 10)).toBeUndefined();
    expect(await serving.readRange(digestOf(blob), 0, 10)).toBeDefined();
    await expect(cmd(["evict", "--cache-dir", dir, L1])).rejects.toThrow(/not in the cache/);
    await expect(cmd(["evict", "--cache-dir", dir, "nonsense"])).rejects.toThrow(/not a sha256 digest/);
  });

  it("verify removes a blob whose bytes no longer match its digest", async () => {
    const { dir, serving, blob } = await setup();
    writeFileSync(join(dir, "blobs/sha256", digestOf(blob).slice(7)), Buffer.concat([blob.subarray(0, 100), Buffer.from("rot")]));
    expect(await cmd(["verify", "--cache-dir", dir])).toMatch(/checked 3 files; removed 1 that failed: blobs\/sha256\//);
    expect(await serving.readRange(digestOf(blob), 0, 10)).toBeUndefined();
    expect(await cmd(["verify", "--cache-dir", dir])).toMatch(/checked 2 files; all good/);
  });

  it("gc removes what dead writers left and evicts down to a bound", async () => {
    const { dir } = await setup();
    const dead = Number(execFileSync("sh", ["-c", "sh -c 'echo $$'"]).toString().trim());
    writeFileSync(join(dir, "wip", `${dead}-abandoned`), "half a file");
    writeFileSync(join(dir, "wip", `${process.pid}-mine`), "being written");
    const out = await cmd(["gc", "--cache-dir", dir, "--cache-size", "2000"]);
    expect(out).toMatch(/removed 1 abandoned partial files/);
    expect(readdirSync(join(dir, "wip"))).toEqual([`${process.pid}-mine`]);
    const status = JSON.parse(await cmd(["status", "--cache-dir", dir, "--json"])) as { usedBytes: number };
    expect(status.usedBytes).toBeLessThanOrEqual(2000);
    rmSync(join(dir, "wip", `${process.pid}-mine`));
  });

  it("names what is wrong", async () => {
    await expect(cmd(["status", "--cache-dir", "/nonexistent/augur-cache"])).rejects.toThrow(/cache directory \/nonexistent\/augur-cache does not exist/);
    await expect(cmd(["frobnicate"])).rejects.toThrow(/unknown cache command "frobnicate"/);
    expect(existsSync("/nonexistent/augur-cache")).toBe(false);
  });
});
