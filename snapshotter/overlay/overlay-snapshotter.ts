// OverlaySnapshotter: containerd's overlayfs snapshotter, crash-safe.
//
// Every change is one SQLite transaction plus one rename, in containerd's order:
// a new snapshot's directory is built under `s/new-*` and renamed to `s/<id>`
// inside the transaction that inserts its row; a removed snapshot's directory
// is renamed to `s/rm-<id>` inside the transaction that deletes its row and
// deleted after it commits. Whatever a SIGKILL interrupts, the directories
// that no committed row names are removed by `cleanup`, which runs at start.
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
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
import { AlreadyExistsError, FailedPreconditionError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import type { RemoteLayers } from "../remote/remote-layers.js";
import { parseSpec, type RemoteLayerSpec } from "../remote/remote-layer.js";
import { layerSourceFromLabels, TARGET_SNAPSHOT_LABEL } from "../source/labels.js";
import { detachBelow } from "./mountinfo.js";
import { mountsBelow } from "../util/mountinfo.js";
import { nowNanos } from "../util/wall-clock.js";
import { NATIVE_FAILED_FILE, NATIVE_SIZE_FILE, nativeCopyRefusal, unpackNativeCopy } from "./native-copy.js";
import pLimit from "p-limit";

const log = logger("overlay");
/** Beside a lazily served snapshot's `fs`: what to mount there again after a restart. */
const REMOTE_SPEC_FILE = "remote.json";

export interface OverlaySnapshotterOptions {
  /** Lazily mounted layers; without it every layer is unpacked by containerd. */
  remote?: RemoteLayers;
  /** Unpack a lazily served layer once its whole blob is cached, and give new mounts that copy. Default true. */
  nativeCopy?: boolean;
  /** Bytes all native copies together may take (native-copy.ts); default unbounded. */
  nativeCopyBytes?: number;
  /** Told when an active snapshot over lazily served layers is prepared: a container is about to start. */
  onActivePrepared?: (active: ActiveSnapshot) => void;
  /** Told when a snapshot is removed, e.g. to end a container's access trace. */
  onRemove?: (removed: { namespace: string; key: string; id: number }) => void;
}

/** An active snapshot as a container's root filesystem. */
export interface ActiveSnapshot {
  namespace: string;
  key: string;
  id: number;
  /** Digests of the lazily served layers below it, bottom first. */
  lazyLayers: string[];
}

export class OverlaySnapshotter implements Snapshotter {
  readonly layout: SnapshotLayout;
  readonly #store: MetaStore;
  readonly #table: SnapshotTable;
  readonly #mountOptions: MountOptions;
  readonly #remote: RemoteLayers | undefined;
  readonly #nativeCopy: boolean;
  readonly #onRemove: OverlaySnapshotterOptions["onRemove"];
  readonly #onActivePrepared: OverlaySnapshotterOptions["onActivePrepared"];
  /** Snapshot ids whose native copy is complete, and the bytes each holds. */
  readonly #native = new Map<number, number>();
  readonly #nativeCopyBytes: number;
  /** Unpacking competes with starting containers for disk and CPU: one at a time. */
  readonly #unpacking = pLimit(1);
  /** Aborted at close: stops a native copy's tar, which must not outlive augur. */
  readonly #closing = new AbortController();
  #unpack: Promise<void> | undefined;

  private constructor(root: string, opts: OverlaySnapshotterOptions) {
    this.#remote = opts.remote;
    this.#nativeCopy = opts.nativeCopy ?? true;
    this.#nativeCopyBytes = opts.nativeCopyBytes ?? Infinity;
    this.#onRemove = opts.onRemove;
    this.#onActivePrepared = opts.onActivePrepared;
    this.layout = new SnapshotLayout(root);
    mkdirSync(this.layout.snapshotsDir, { recursive: true, mode: 0o700 });
    this.#store = new MetaStore(this.layout.metadataFile);
    this.#table = new SnapshotTable(this.#store.db);
    this.#mountOptions = {
      indexOff: overlayHasIndexFeature(),
      lowerDir: (id) => (this.#native.has(id) ? this.layout.native(id) : this.layout.fs(id)),
    };
  }

  /** Opens (or creates) the snapshotter under `root` and removes what an earlier crash left behind. */
  static async open(root: string, opts: OverlaySnapshotterOptions = {}): Promise<OverlaySnapshotter> {
    const s = new OverlaySnapshotter(root, opts);
    // Mounts left by an augur that died answer nothing: detach them before anything walks the tree.
    await detachBelow(s.layout.snapshotsDir);
    await s.cleanup();
    await s.restoreRemoteLayers();
    return s;
  }

  /** Mounts again the lazily served layers a previous run had mounted. */
  private async restoreRemoteLayers(): Promise<void> {
    const ids = this.#store.read(() => this.#table.ids());
    for (const id of ids) {
      const file = join(this.layout.dir(id), REMOTE_SPEC_FILE);
      if (!existsSync(file)) continue;
      if (!this.#remote) {
        log.error("snapshot is a lazily served layer but lazy pulling is disabled; it stays empty", { id });
        continue;
      }
      if (existsSync(this.layout.native(id))) this.#native.set(id, this.#recordedNativeBytes(id));
      try {
        await this.#remote.mount(this.layout.fs(id), parseSpec(readFileSync(file, "utf8"), file));
        this.scheduleNativeCopy(id);
      } catch (err) {
        log.error("could not mount lazily served layer again; containers using it will fail", { id, error: errorMessage(err) });
      }
    }
  }

  /**
   * The active snapshot whose upper directory is `upperdir` (a container's
   * root filesystem, as its mount namespace shows it), or undefined.
   */
  activeByUpper(upperdir: string): ActiveSnapshot | undefined {
    const m = /^(.*)\/(\d+)\/fs$/.exec(upperdir);
    if (!m || m[1] !== this.layout.snapshotsDir) return undefined;
    const rec = this.#store.read(() => this.#table.byId(Number(m[2])));
    return rec && rec.info.kind === "active" ? this.#active(rec) : undefined;
  }

  #active(rec: SnapshotRecord): ActiveSnapshot {
    const lazyLayers: string[] = [];
    for (const pid of [...rec.parentIds].reverse()) {
      try {
        lazyLayers.push(parseSpec(readFileSync(join(this.layout.dir(pid), REMOTE_SPEC_FILE), "utf8"), "remote.json").layerDigest);
      } catch {
        // unpacked by containerd: not served lazily, not traced
      }
    }
    return { namespace: rec.namespace, key: rec.info.name, id: rec.id, lazyLayers };
  }

  /** Whether snapshot directory `id` is still an active snapshot of `namespace`. */
  isActive(namespace: string, id: number): boolean {
    const rec = this.#store.read(() => this.#table.byId(id));
    return rec !== undefined && rec.info.kind === "active" && rec.namespace === namespace;
  }

  async stat(scope: Scope, key: string): Promise<Info> {
    return this.#store.read(() => this.#table.get(scope, key)).info;
  }

  async update(scope: Scope, info: Info, fieldPaths: string[]): Promise<Info> {
    return this.#store.write(() => this.#table.update(scope, info, fieldPaths, nowNanos())).info;
  }

  async usage(scope: Scope, key: string): Promise<Usage> {
    const rec = this.#store.read(() => this.#table.get(scope, key));
    // Committed snapshots are measured once, at commit; active ones change.
    if (rec.info.kind === "active") return diskUsage(this.layout.fs(rec.id));
    return this.#remote?.usage(this.layout.fs(rec.id)) ?? rec.usage;
  }

  async mounts(scope: Scope, key: string): Promise<Mount[]> {
    const rec = this.#store.read(() => this.#table.get(scope, key));
    if (rec.info.kind === "committed") {
      throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is committed; only active snapshots and views have mounts`);
    }
    return this.mountsOf(rec);
  }

  async prepare(scope: Scope, key: string, parent: string, labels: Labels): Promise<Mount[]> {
    const target = labels[TARGET_SNAPSHOT_LABEL];
    if (target && (await this.takeOver(scope, key, parent, labels, target))) {
      // containerd's remote-snapshot protocol: the layer is already there, under its chain ID.
      throw new AlreadyExistsError(`target snapshot ${JSON.stringify(target)} already exists`);
    }
    const rec = this.create(scope, "active", key, parent, labels, await this.parentOwner(scope, parent));
    // containerd's unpack snapshots (`extract-<n> <chainID>`) are not containers
    if (this.#onActivePrepared && rec.parentIds.length && !/(^|\/)extract-/.test(key)) {
      const active = this.#active(rec);
      if (active.lazyLayers.length) this.#onActivePrepared(active);
    }
    return this.mountsOf(rec);
  }

  async view(scope: Scope, key: string, parent: string, labels: Labels): Promise<Mount[]> {
    return this.mountsOf(this.create(scope, "view", key, parent, labels, await this.parentOwner(scope, parent)));
  }

  /**
   * Serves the layer a Prepare labels lazily: mounts it at a new snapshot's
   * `fs` and commits that snapshot as `target`. False means containerd unpacks
   * the layer itself; the reason is logged once.
   */
  private async takeOver(scope: Scope, key: string, parent: string, labels: Labels, target: string): Promise<boolean> {
    const found = layerSourceFromLabels(labels);
    if (found.kind === "none") return false;
    const why = (reason: string): false => {
      log.warn("layer is not served lazily; containerd will download and unpack it", { target, reason });
      return false;
    };
    if (found.kind === "invalid") return why(found.reason);
    if (!this.#remote) return why("lazy pulling is disabled in the configuration");
    if (this.#exists(scope, target)) return true;
    let spec: RemoteLayerSpec;
    try {
      spec = await this.#remote.describe(found.source);
    } catch (err) {
      return why(errorMessage(err));
    }
    // No owner to copy: `fs` becomes the layer's mount point. (Asking a parent
    // still streaming would also make every layer's Prepare wait for the one below.)
    const rec = this.create(scope, "active", key, parent, labels, undefined);
    const fs = this.layout.fs(rec.id);
    try {
      writeFileSync(join(this.layout.dir(rec.id), REMOTE_SPEC_FILE), JSON.stringify(spec));
      rmSync(this.layout.work(rec.id), { recursive: true, force: true });
      await this.#remote.mount(fs, spec);
      const usage = this.#remote.usage(fs) ?? { size: 0, inodes: 0 };
      this.#store.write(() => this.#table.commit(scope, target, key, labels, usage, nowNanos()));
      this.scheduleNativeCopy(rec.id);
      return true;
    } catch (err) {
      await this.#remote.unmount(fs).catch(() => undefined);
      await this.remove(scope, key).catch(() => undefined);
      if (err instanceof AlreadyExistsError) return true; // a concurrent Prepare committed it first
      return why(errorMessage(err));
    }
  }

  /** Once the layer's whole blob is cached, unpacks it beside the FUSE mount for new containers to use. */
  private scheduleNativeCopy(id: number): void {
    const remote = this.#remote;
    if (!remote || !this.#nativeCopy || this.#native.has(id) || existsSync(join(this.layout.dir(id), NATIVE_FAILED_FILE))) return;
    const fs = this.layout.fs(id);
    void (async () => {
      // wait until the layer is opened and its blob whole; pinned only once its turn to unpack comes
      const ready = await remote.completeBlob(fs);
      ready?.release();
      if (!ready) return;
      await this.#unpacking(async () => {
        const blob = await remote.completeBlob(fs);
        if (!blob) return; // evicted meanwhile: it stays on FUSE
        try {
          if (!remote.isMounted(fs) || this.#closing.signal.aborted) return; // removed meanwhile, or shutting down
          const unpacked = remote.usage(fs)?.size ?? 0;
          const used = [...this.#native.values()].reduce((a, b) => a + b, 0);
          const refused = nativeCopyRefusal({ unpacked, compressed: statSync(blob.path).size }, { used, limit: this.#nativeCopyBytes });
          if (refused) {
            log.warn("layer not copied natively; containers keep reading it through FUSE", { id, layer: blob.layer, why: refused });
            return;
          }
          const started = Date.now();
          this.#unpack = unpackNativeCopy(blob.path, blob.mediaType, this.layout.native(id), this.#closing.signal);
          await this.#unpack;
          writeFileSync(join(this.layout.dir(id), NATIVE_SIZE_FILE), `${unpacked}\n`);
          this.#native.set(id, unpacked);
          log.info("layer unpacked natively; new containers read it without FUSE", { id, layer: blob.layer, bytes: unpacked, ms: Date.now() - started });
        } finally {
          blob.release();
        }
      });
    })().catch((err: unknown) => {
      if (this.#closing.signal.aborted) return;
      log.warn("native copy of layer failed; containers keep reading it through FUSE, and it is not tried again", { id, error: errorMessage(err) });
      // remembered on disk, so a restart does not unpack a layer that cannot be unpacked again
      try {
        writeFileSync(join(this.layout.dir(id), NATIVE_FAILED_FILE), `${errorMessage(err)}\n`);
      } catch {
        // the snapshot went meanwhile
      }
    });
  }

  /** The bytes a native copy made before this run holds, as recorded beside it (0 for copies made before augur recorded them). */
  #recordedNativeBytes(id: number): number {
    try {
      const n = Number(readFileSync(join(this.layout.dir(id), NATIVE_SIZE_FILE), "utf8").trim());
      return Number.isFinite(n) && n >= 0 ? n : 0;
    } catch {
      return 0;
    }
  }

  #exists(scope: Scope, key: string): boolean {
    try {
      this.#store.read(() => this.#table.get(scope, key));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Owner of the parent's root directory, which a new upper directory copies.
   * A lazily served parent is asked, not stat'ed: its FUSE server is this
   * process, and a synchronous stat of it would wait on ourselves forever.
   */
  private async parentOwner(scope: Scope, parent: string): Promise<{ uid: number; gid: number } | undefined> {
    if (!parent) return undefined;
    let id: number;
    try {
      id = this.#store.read(() => this.#table.get(scope, parent)).id;
    } catch {
      return undefined; // create() reports the missing parent
    }
    const fs = this.layout.fs(id);
    if (this.#remote?.isMounted(fs)) return this.#remote.rootOwner(fs);
    if (existsSync(join(this.layout.dir(id), REMOTE_SPEC_FILE))) return undefined; // not mounted: no owner to copy
    const st = statSync(fs);
    return { uid: st.uid, gid: st.gid };
  }

  async commit(scope: Scope, name: string, key: string, labels: Labels): Promise<void> {
    validateLabels(labels);
    const rec = this.#store.read(() => this.#table.get(scope, key));
    if (rec.info.kind !== "active") {
      throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is a ${rec.info.kind} snapshot, only active snapshots can be committed`);
    }
    const usage = await diskUsage(this.layout.fs(rec.id));
    this.#store.write(() => this.#table.commit(scope, name, key, labels, usage, nowNanos()));
  }

  async remove(scope: Scope, key: string): Promise<void> {
    let moved: { from: string; to: string } | undefined;
    let removed: { namespace: string; key: string; id: number } | undefined;
    try {
      const existing = this.#store.read(() => this.#table.get(scope, key));
      await this.#remote?.unmount(this.layout.fs(existing.id));
      this.#store.write(() => {
        const rec = this.#table.remove(scope, key);
        removed = { namespace: rec.namespace, key: rec.info.name, id: rec.id };
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
    if (removed) {
      this.#native.delete(removed.id);
      this.#onRemove?.(removed);
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
      const dir = join(this.layout.snapshotsDir, name);
      if (mountsBelow(dir).length > 0) await detachBelow(dir);
      await removeTree(dir);
    }
  }

  async close(): Promise<void> {
    this.#closing.abort();
    this.#unpacking.clearQueue();
    await this.#unpack?.catch(() => undefined); // tar stopped and its partial copy removed
    await this.#remote?.close();
    this.#store.close();
  }

  private create(scope: Scope, kind: "active" | "view", key: string, parent: string, labels: Labels, owner: { uid: number; gid: number } | undefined): SnapshotRecord {
    validateLabels(labels);
    const tmp = mkdtempSync(join(this.layout.snapshotsDir, "new-"));
    try {
      const fs = join(tmp, "fs");
      mkdirSync(fs);
      chmodSync(fs, 0o755);
      if (kind === "active") mkdirSync(join(tmp, "work"), { mode: 0o711 });
      return this.#store.write(() => {
        const rec = this.#table.create(scope, kind, key, parent, labels, nowNanos());
        // The new upper directory is the container's root: give it the owner of the layer below.
        if (owner) chownSync(fs, owner.uid, owner.gid);
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
