// Several augurs on one cache directory: the shared ledger (cache-ledger.ts)
// keeps one byte bound, one recency order, pins that hold against every
// instance, fetch claims, and survives being deleted or damaged.
import { afterEach, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayerCache } from "../../../snapshotter/cache/layer-cache.js";
import { LEDGER_FILE } from "../../../snapshotter/cache/cache-ledger.js";

const open: LayerCache[] = [];
const dirs: string[] = [];
afterEach(() => {
  open.splice(0).forEach((c) => c.close());
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});
const newDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "augur-ledger-"));
  dirs.push(d);
  return d;
};
const cacheOn = (dir: string, size: number): LayerCache => {
  const c = new LayerCache(dir, size);
  open.push(c);
  return c;
};
const L1 = `sha256:${"1".repeat(64)}`;
const L2 = `sha256:${"2".repeat(64)}`;
const L3 = `sha256:${"3".repeat(64)}`;

describe("the shared cache ledger", () => {
  it("one instance reads what another stored, and the bound holds for the directory", async () => {
    const dir = newDir();
    const a = cacheOn(dir, 3000);
    const b = cacheOn(dir, 3000);
    await a.storeRange(L1, 0, Buffer.alloc(1000, 1));
    expect((await b.readRange(L1, 10, 20))?.equals(Buffer.alloc(20, 1))).toBe(true);
    await b.storeRange(L2, 0, Buffer.alloc(1500, 2));
    await a.storeRange(L3, 0, Buffer.alloc(1500, 3));
    // 4000 bytes stored by two instances under one 3000-byte bound: the least recently used (L1) went
    expect(a.status().usedBytes).toBeLessThanOrEqual(3000);
    expect(b.status().usedBytes).toBe(a.status().usedBytes);
    expect(await b.readRange(L1, 0, 10)).toBeUndefined();
    expect(await b.readRange(L3, 0, 10)).toBeDefined();
    expect(a.status().instances).toBe(2);
  });

  it("a layer one instance pins is safe from another's eviction until unpinned", async () => {
    const dir = newDir();
    const a = cacheOn(dir, 2000);
    const b = cacheOn(dir, 2000);
    const unpin = a.pin(L1);
    await a.storeRange(L1, 0, Buffer.alloc(1500, 1));
    // over the bound: b's eviction takes its own unpinned data, not a's pinned layer
    await b.storeRange(L2, 0, Buffer.alloc(1000, 2));
    expect(await b.readRange(L1, 0, 1500)).toBeDefined();
    expect(await b.readRange(L2, 0, 10)).toBeUndefined();
    expect(b.status().directoryPinnedLayers).toEqual([L1]);
    expect(b.status().pinnedLayers).toEqual([]);
    unpin();
    await b.storeRange(L3, 0, Buffer.alloc(1000, 3));
    expect(await b.readRange(L1, 0, 10)).toBeUndefined();
    expect(await b.readRange(L3, 0, 10)).toBeDefined();
    expect(b.status().usedBytes).toBeLessThanOrEqual(2000);
  });

  it("pins of an augur that is gone hold nothing", async () => {
    const dir = newDir();
    const a = cacheOn(dir, 2000);
    await a.storeRange(L1, 0, Buffer.alloc(1500, 1));
    // an instance that pinned L1 and was killed: its pid no longer runs
    const dead = Number(execFileSync("sh", ["-c", "sh -c 'echo $$'"]).toString().trim());
    const db = new Database(join(dir, LEDGER_FILE));
    db.prepare("INSERT INTO owners (owner, pid, started, kernel, seen_ms) SELECT 'gone', ?, '1', kernel, ? FROM owners LIMIT 1").run(dead, Date.now());
    db.prepare("INSERT INTO pins (layer, owner, n) VALUES (?, 'gone', 1)").run("1".repeat(64));
    db.close();
    expect(a.status().directoryPinnedLayers).toEqual([]);
    await a.storeRange(L2, 0, Buffer.alloc(1000, 2));
    expect(await a.readRange(L1, 0, 10)).toBeUndefined();
  });

  it("a neighbour's fetch of the same bytes is waited for, not repeated", async () => {
    const dir = newDir();
    const a = cacheOn(dir, 1 << 20);
    const b = cacheOn(dir, 1 << 20);
    const claim = await a.claimRange(L1, 0, 100);
    expect(claim).toBeDefined();
    const waiting = b.claimRange(L1, 0, 100);
    await new Promise((r) => setTimeout(r, 100));
    await a.storeRange(L1, 0, Buffer.alloc(100, 7));
    claim?.release();
    // b's claim resolves empty-handed: the bytes are there to read
    expect(await waiting).toBeUndefined();
    expect((await b.readRange(L1, 0, 100))?.equals(Buffer.alloc(100, 7))).toBe(true);
    // a claim released without bytes (a failed fetch) lets the next one fetch
    const c1 = await a.claimRange(L2, 0, 10);
    c1?.release();
    const c2 = await b.claimRange(L2, 0, 10);
    expect(c2).toBeDefined();
    c2?.release();
  });

  it("is rebuilt from the files when deleted or damaged, losing nothing", async () => {
    const dir = newDir();
    const a = new LayerCache(dir, 1 << 20);
    await a.storeRange(L1, 0, Buffer.alloc(1000, 1));
    await a.storeIndex(L2, Buffer.from("index"));
    const before = a.status();
    a.close();
    for (const f of readdirSync(dir)) if (f.startsWith(LEDGER_FILE)) rmSync(join(dir, f));
    const b = new LayerCache(dir, 1 << 20);
    expect(b.status().usedBytes).toBe(before.usedBytes);
    expect(b.status().files).toEqual(before.files);
    b.close();
    writeFileSync(join(dir, LEDGER_FILE), "this is not a database, it is damaged".repeat(200));
    for (const f of readdirSync(dir)) if (f.startsWith(`${LEDGER_FILE}-`)) rmSync(join(dir, f));
    const c = cacheOn(dir, 1 << 20);
    expect(c.status().usedBytes).toBe(before.usedBytes);
    expect((await c.readRange(L1, 0, 1000))?.equals(Buffer.alloc(1000, 1))).toBe(true);
    expect(readdirSync(dir).some((f) => f.startsWith(`${LEDGER_FILE}.damaged-`))).toBe(true);
    // a file removed behind the ledger's back is dropped from it at the next open
    rmSync(join(dir, "indexes/sha256", "2".repeat(64)));
    const d = cacheOn(dir, 1 << 20);
    expect(d.status().files.indexes).toBe(0);
    expect(existsSync(join(dir, "chunks/sha256", "1".repeat(64)))).toBe(true);
  });
});
