import { afterEach, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetaStore } from "../../../snapshotter/storage/metastore.js";
import { SnapshotTable } from "../../../snapshotter/storage/snapshot-table.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dbFile(): string {
  const d = mkdtempSync(join(tmpdir(), "augur-metastore-"));
  dirs.push(d);
  return join(d, "metadata.db");
}

describe("metadata store", () => {
  it("keeps created and updated to the nanosecond", () => {
    const store = new MetaStore(dbFile());
    try {
      const table = new SnapshotTable(store.db);
      const t = 1795482123_456789123n;
      store.write(() => table.create({ namespace: "ns" }, "active", "a", "", {}, t));
      store.write(() => table.update({ namespace: "ns" }, { name: "a", parent: "", kind: "active", created: 0n, updated: 0n, labels: { x: "y" } }, [], t + 1n));
      const { info } = store.read(() => table.get({ namespace: "ns" }, "a"));
      expect(info.created).toBe(t);
      expect(info.updated).toBe(t + 1n);
    } finally {
      store.close();
    }
  });

  it("migrates a millisecond (v1) root in place, keeping every snapshot and its times", () => {
    const file = dbFile();
    const v1 = new Database(file);
    v1.exec(`CREATE TABLE snapshots (
       id INTEGER PRIMARY KEY AUTOINCREMENT, namespace TEXT NOT NULL, key TEXT NOT NULL,
       kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
       parent_id INTEGER REFERENCES snapshots(id), created_ms REAL NOT NULL, updated_ms REAL NOT NULL,
       labels TEXT NOT NULL DEFAULT '{}', size INTEGER NOT NULL DEFAULT 0, inodes INTEGER NOT NULL DEFAULT 0,
       UNIQUE (namespace, key));
     CREATE INDEX snapshots_parent ON snapshots(parent_id);
     INSERT INTO snapshots (namespace, key, kind, parent_id, created_ms, updated_ms, labels, size, inodes)
       VALUES ('default', 'base', 'committed', NULL, 1795482123456, 1795482124000, '{"l":"v"}', 4096, 3);
     INSERT INTO snapshots (namespace, key, kind, parent_id, created_ms, updated_ms)
       VALUES ('default', 'work', 'active', 1, 1795482125001, 1795482125001);`);
    v1.pragma("user_version = 1");
    v1.close();

    const store = new MetaStore(file);
    try {
      expect(store.db.pragma("user_version", { simple: true })).toBe(2);
      const table = new SnapshotTable(store.db);
      const base = store.read(() => table.get({ namespace: "default" }, "base"));
      expect(base.info).toEqual({ name: "base", parent: "", kind: "committed", created: 1795482123456_000000n, updated: 1795482124000_000000n, labels: { l: "v" } });
      expect(base.usage).toEqual({ size: 4096, inodes: 3 });
      const work = store.read(() => table.get({ namespace: "default" }, "work"));
      expect(work.info.parent).toBe("base");
      expect(work.parentIds).toEqual([base.id]);
      expect(work.info.created).toBe(1795482125001_000000n);
    } finally {
      store.close();
    }
  });

  it("a call without a namespace builds on a parent in any namespace, in the parent's namespace", () => {
    // containerd 1.6 forwards CRI's own namespace (k8s.io) but none for ctr's requests.
    const store = new MetaStore(dbFile());
    try {
      const table = new SnapshotTable(store.db);
      const k8s = { namespace: "k8s.io" };
      const none = { namespace: undefined };
      store.write(() => table.create(k8s, "active", "extract", "", {}, 1n));
      store.write(() => table.commit(k8s, "sha256:chain", "extract", {}, { size: 0, inodes: 0 }, 2n));
      const child = store.write(() => table.create(none, "active", "k8s.io/5/ctr-1", "sha256:chain", {}, 3n));
      expect(child.namespace).toBe("k8s.io");
      expect(child.info.parent).toBe("sha256:chain");
      // Named alike in two namespaces (the same chain ID pulled twice), the default one serves.
      store.write(() => table.create({ namespace: "default" }, "active", "x", "", {}, 4n));
      const inDefault = store.write(() => table.commit({ namespace: "default" }, "sha256:chain", "x", {}, { size: 0, inodes: 0 }, 5n));
      const other = store.write(() => table.create(none, "active", "default/6/ctr-2", "sha256:chain", {}, 6n));
      expect(other.parentIds).toEqual([inDefault.id]);
      // A named namespace still sees only its own snapshots.
      expect(() => store.write(() => table.create({ namespace: "other" }, "active", "y", "sha256:chain", {}, 7n))).toThrow(/parent snapshot "sha256:chain" does not exist/);
      expect(() => store.write(() => table.create(none, "active", "z", "sha256:absent", {}, 8n))).toThrow(/parent snapshot "sha256:absent" does not exist/);
    } finally {
      store.close();
    }
  });
});
