// OverlaySnapshotter: containerd's overlayfs snapshotter, crash-safe.
//
// Every change is one SQLite transaction plus one rename, in containerd's order:
// a new snapshot's directory is built under `s/new-*` and renamed to `s/<id>`
// inside the transaction that inserts its row; a removed snapshot's directory
// is renamed to `s/rm-<id>` inside the transaction that deletes its row and
// deleted after it commits. Whatever a SIGKILL interrupts, the directories
// that no committed row names are removed by `cleanup`, which runs at start.
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { MetaStore } from "../storage/metastore.js";
import { SnapshotTable, validateLabels, type SnapshotRecord } from "../storage/snapshot-table.js";
import { parseFilters } from "../filters/filters.js";
import { snapshotAdaptor } from "../snapshots/adaptor.js";
import type { Info, Labels, Mount, Scope, Snapshotter, Usage } from "../snapshots/snapshotter.js";
import { computeMounts, type MountOptions } from "./mounts.js";
import { SnapshotLayout } from "./layout.js";
import { diskUsage } from "./usage.js";
import { FailedPreconditionError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/trace.js";

const log = logger("overlay");

export class OverlaySnapshotter implements Snapshotter {
  readonly layout: SnapshotLayout;
  readonly #store: MetaStore;
  readonly #table: SnapshotTable;
  readonly #mountOptions: MountOptions;

  private constructor(root: string) {
    this.layout = new SnapshotLayout(root);
    mkdirSync(this.layout.snapshotsDir, { recursive: true, mode: 0o700 });
    this.#store = new MetaStore(this.layout.metadataFile);
    this.#table = new SnapshotTable(this.#store.db);
    this.#mountOptions = { indexOff: overlayHasIndexFeature() };
  }

  /** Opens (or creates) the snapshotter under `root` and removes what an earlier crash left behind. */
  static async open(root: string): Promise<OverlaySnapshotter> {
    const s = new OverlaySnapshotter(root);
    await s.cleanup();
    return s;
  }

  async stat(scope: Scope, key: string): Promise<Info> {
    return this.#store.read(() => this.#table.get(scope, key)).info;
  }

  async update(scope: Scope, info: Info, fieldPaths: string[]): Promise<Info> {
    return this.#store.write(() => this.#table.update(scope, info, fieldPaths, Date.now())).info;
  }

  async usage(scope: Scope, key: string): Promise<Usage> {
    const rec = this.#store.read(() => this.#table.get(scope, key));
    // Committed snapshots are measured once, at commit; active ones change.
    return rec.info.kind === "active" ? diskUsage(this.layout.fs(rec.id)) : rec.usage;
  }

  async mounts(scope: Scope, key: string): Promise<Mount[]> {
    const rec = this.#store.read(() => this.#table.get(scope, key));
    if (rec.info.kind === "committed") {
      throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is committed; only active snapshots and views have mounts`);
    }
    return this.mountsOf(rec);
  }

  async prepare(scope: Scope, key: string, parent: string, labels: Labels): Promise<Mount[]> {
    return this.mountsOf(this.create(scope, "active", key, parent, labels));
  }

  async view(scope: Scope, key: string, parent: string, labels: Labels): Promise<Mount[]> {
    return this.mountsOf(this.create(scope, "view", key, parent, labels));
  }

  async commit(scope: Scope, name: string, key: string, labels: Labels): Promise<void> {
    validateLabels(labels);
    const rec = this.#store.read(() => this.#table.get(scope, key));
    if (rec.info.kind !== "active") {
      throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is a ${rec.info.kind} snapshot, only active snapshots can be committed`);
    }
    const usage = await diskUsage(this.layout.fs(rec.id));
    this.#store.write(() => this.#table.commit(scope, name, key, labels, usage, Date.now()));
  }

  async remove(scope: Scope, key: string): Promise<void> {
    let moved: { from: string; to: string } | undefined;
    try {
      this.#store.write(() => {
        const rec = this.#table.remove(scope, key);
        const from = this.layout.dir(rec.id);
        const to = join(this.layout.snapshotsDir, `rm-${rec.id}`);
        if (existsSync(from)) {
          renameSync(from, to);
          moved = { from, to };
        }
      });
    } catch (err) {
      // The row is still there: put its directory back.
      if (moved && existsSync(moved.to)) renameSync(moved.to, moved.from);
      throw err;
    }
    if (moved) await removeTree(moved.to);
  }

  async walk(scope: Scope, filters: string[]): Promise<Info[]> {
    const match = parseFilters(filters);
    return this.#store
      .read(() => this.#table.list(scope))
      .map((r) => r.info)
      .filter((info) => match(snapshotAdaptor(info)));
  }

  async cleanup(_scope?: Scope): Promise<void> {
    const ids = this.#store.read(() => this.#table.ids());
    for (const name of readdirSync(this.layout.snapshotsDir)) {
      if (/^\d+$/.test(name) && ids.has(Number(name))) continue;
      log.info("removing directory no snapshot refers to", { dir: name });
      await removeTree(join(this.layout.snapshotsDir, name));
    }
  }

  async close(): Promise<void> {
    this.#store.close();
  }

  private create(scope: Scope, kind: "active" | "view", key: string, parent: string, labels: Labels): SnapshotRecord {
    validateLabels(labels);
    const tmp = mkdtempSync(join(this.layout.snapshotsDir, "new-"));
    try {
      const fs = join(tmp, "fs");
      mkdirSync(fs);
      chmodSync(fs, 0o755);
      if (kind === "active") mkdirSync(join(tmp, "work"), { mode: 0o711 });
      return this.#store.write(() => {
        const rec = this.#table.create(scope, kind, key, parent, labels, Date.now());
        const nearest = rec.parentIds[0];
        if (nearest !== undefined) {
          // The new upper directory is the container's root: give it the owner of the layer below.
          const st = statSync(this.layout.fs(nearest));
          chownSync(fs, st.uid, st.gid);
        }
        renameSync(tmp, this.layout.dir(rec.id));
        return rec;
      });
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  private mountsOf(rec: SnapshotRecord): Mount[] {
    return computeMounts({ id: rec.id, kind: rec.info.kind, parentIds: rec.parentIds }, this.layout, this.#mountOptions);
  }
}

async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (err) {
    log.warn("could not remove directory; the next cleanup retries", { path, error: errorMessage(err) });
  }
}

/** containerd adds `index=off` when the overlay module has the index feature, so a lower may sit under many uppers. */
function overlayHasIndexFeature(): boolean {
  return existsSync("/sys/module/overlay/parameters/index");
}
