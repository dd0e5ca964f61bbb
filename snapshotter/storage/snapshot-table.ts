// SnapshotTable: the snapshot rows and the rules containerd's metadata storage
// enforces on them (snapshots/storage/bolt.go). Every method is synchronous and
// must run inside MetaStore.write/read, so a check and the change it guards are
// one transaction. Statements are prepared once.
import type { Statement } from "better-sqlite3";
import type { Db } from "./metastore.js";
import type { UnixNanos } from "../util/wall-clock.js";
import type { Info, Kind, Labels, Scope, Usage } from "../snapshots/snapshotter.js";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../errdefs/errors.js";

/** A stored snapshot: its Info plus where it lives and what it builds on. */
export interface SnapshotRecord {
  id: number;
  namespace: string;
  info: Info;
  /** Directory ids of the committed parents, nearest first (empty in list results). */
  parentIds: number[];
  usage: Usage;
}

interface Row {
  id: number;
  namespace: string;
  key: string;
  kind: Kind;
  parent_id: number | null;
  parent_key: string | null;
  /** Decimal nanoseconds: read as text, since the count is past JavaScript's exact integers. */
  created_ns: string;
  updated_ns: string;
  labels: string;
  size: number;
  inodes: number;
}

/** Namespace new snapshots go to when a caller names none. */
export const DEFAULT_NAMESPACE = "default";

const SELECT = `SELECT s.id, s.namespace, s.key, s.kind, s.parent_id, CAST(s.created_ns AS TEXT) AS created_ns,
  CAST(s.updated_ns AS TEXT) AS updated_ns, s.labels, s.size, s.inodes, p.key AS parent_key
  FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

export class SnapshotTable {
  readonly #byKey: Statement<[string, string], Row>;
  readonly #byKeyAnyNs: Statement<[string], Row>;
  readonly #byId: Statement<[number], Row>;
  readonly #all: Statement<[], Row>;
  readonly #inNs: Statement<[string], Row>;
  readonly #insert: Statement<[string, string, Kind, number | null, bigint, bigint, string]>;
  readonly #commit: Statement<[string, bigint, bigint, string, number, number, number]>;
  readonly #setLabels: Statement<[string, bigint, number]>;
  readonly #delete: Statement<[number]>;
  readonly #children: Statement<[number], { n: number }>;
  readonly #ids: Statement<[], { id: number }>;

  constructor(db: Db) {
    this.#byKey = db.prepare(`${SELECT} WHERE s.namespace = ? AND s.key = ?`);
    this.#byKeyAnyNs = db.prepare(`${SELECT} WHERE s.key = ? ORDER BY s.namespace`);
    this.#byId = db.prepare(`${SELECT} WHERE s.id = ?`);
    this.#all = db.prepare(`${SELECT} ORDER BY s.namespace, s.key`);
    this.#inNs = db.prepare(`${SELECT} WHERE s.namespace = ? ORDER BY s.key`);
    this.#insert = db.prepare(
      `INSERT INTO snapshots (namespace, key, kind, parent_id, created_ns, updated_ns, labels) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#commit = db.prepare(
      `UPDATE snapshots SET key = ?, kind = 'committed', created_ns = ?, updated_ns = ?, labels = ?, size = ?, inodes = ? WHERE id = ?`,
    );
    this.#setLabels = db.prepare(`UPDATE snapshots SET labels = ?, updated_ns = ? WHERE id = ?`);
    this.#delete = db.prepare(`DELETE FROM snapshots WHERE id = ?`);
    this.#children = db.prepare(`SELECT count(*) AS n FROM snapshots WHERE parent_id = ?`);
    this.#ids = db.prepare(`SELECT id FROM snapshots`);
  }

  get(scope: Scope, key: string): SnapshotRecord {
    return this.record(this.row(scope, key));
  }

  /** Adds an active snapshot or view on top of committed `parent` ("" for none). */
  create(scope: Scope, kind: "active" | "view", key: string, parent: string, labels: Labels, now: UnixNanos): SnapshotRecord {
    if (key === "") throw new InvalidArgumentError("snapshot key must not be empty");
    let parentId: number | null = null;
    let parentNs: string | undefined;
    if (parent !== "") {
      const p = this.parentRow(scope, parent);
      if (p.kind !== "committed") {
        throw new InvalidArgumentError(`parent ${JSON.stringify(parent)} is not a committed snapshot (it is ${p.kind})`);
      }
      parentId = p.id;
      parentNs = p.namespace;
    }
    // A call without a namespace (containerd 1.6 forwards none for its own
    // clients' requests) builds in its parent's namespace.
    const namespace = scope.namespace ?? parentNs ?? DEFAULT_NAMESPACE;
    if (this.#byKey.get(namespace, key)) throw new AlreadyExistsError(`snapshot ${JSON.stringify(key)} already exists`);
    const { lastInsertRowid } = this.#insert.run(namespace, key, kind, parentId, now, now, JSON.stringify(labels));
    return this.record(this.mustRow(Number(lastInsertRowid)));
  }

  /** Turns active `key` into committed `name`, keeping its directory. A committed snapshot is new: created = updated = now, as in containerd. */
  commit(scope: Scope, name: string, key: string, labels: Labels, usage: Usage, now: UnixNanos): SnapshotRecord {
    if (name === "") throw new InvalidArgumentError("committed snapshot name must not be empty");
    const row = this.row(scope, key);
    if (row.kind !== "active") {
      throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is a ${row.kind} snapshot, only active snapshots can be committed`);
    }
    if (this.#byKey.get(row.namespace, name)) throw new AlreadyExistsError(`snapshot ${JSON.stringify(name)} already exists`);
    this.#commit.run(name, now, now, JSON.stringify(labels), usage.size, usage.inodes, row.id);
    return this.record(this.mustRow(row.id));
  }

  /** Deletes `key`; a snapshot others build on cannot go. */
  remove(scope: Scope, key: string): SnapshotRecord {
    const row = this.row(scope, key);
    if ((this.#children.get(row.id)?.n ?? 0) > 0) {
      throw new FailedPreconditionError(`cannot remove snapshot ${JSON.stringify(key)}: other snapshots use it as their parent`);
    }
    this.#delete.run(row.id);
    return this.record(row);
  }

  /**
   * Updates labels as containerd does: no paths replaces all labels; `labels`
   * replaces all; `labels.<k>` sets or (when absent from info) deletes one label.
   * Name, parent, kind and timestamps cannot be changed.
   */
  update(scope: Scope, info: Info, fieldPaths: string[], now: UnixNanos): SnapshotRecord {
    const row = this.row(scope, info.name);
    let labels: Labels = JSON.parse(row.labels) as Labels;
    if (fieldPaths.length === 0) {
      labels = { ...info.labels };
    } else {
      for (const path of fieldPaths) {
        if (path === "labels") {
          labels = { ...info.labels };
        } else if (path.startsWith("labels.")) {
          const k = path.slice("labels.".length);
          const v = info.labels[k];
          if (v === undefined) delete labels[k];
          else labels[k] = v;
        } else {
          throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(info.name)}: only labels can change`);
        }
      }
    }
    validateLabels(labels);
    this.#setLabels.run(JSON.stringify(labels), now, row.id);
    return this.record(this.mustRow(row.id));
  }

  list(scope: Scope): SnapshotRecord[] {
    const rows = scope.namespace === undefined ? this.#all.all() : this.#inNs.all(scope.namespace);
    // Listing does not need parent chains; skip walking them for every row.
    return rows.map((r) => this.record(r, false));
  }

  /** The snapshot whose directory is `id`, or undefined. */
  byId(id: number): SnapshotRecord | undefined {
    const row = this.#byId.get(id);
    return row ? this.record(row) : undefined;
  }

  /** Every directory id in use, for cleanup. */
  ids(): Set<number> {
    return new Set(this.#ids.all().map((r) => r.id));
  }

  private row(scope: Scope, key: string): Row {
    if (key === "") throw new InvalidArgumentError("snapshot key must not be empty");
    if (scope.namespace !== undefined) {
      const row = this.#byKey.get(scope.namespace, key);
      if (!row) throw new NotFoundError(`snapshot ${JSON.stringify(key)} does not exist`);
      return row;
    }
    const rows = this.#byKeyAnyNs.all(key);
    if (rows.length === 0) throw new NotFoundError(`snapshot ${JSON.stringify(key)} does not exist`);
    if (rows.length > 1) {
      throw new FailedPreconditionError(`snapshot key ${JSON.stringify(key)} exists in several namespaces; name one (gRPC metadata containerd-namespace)`);
    }
    return rows[0] as Row;
  }

  /**
   * The committed parent a new snapshot builds on. Without a namespace the
   * parent may be in any: containerd 1.6 forwards the namespace of the CRI
   * plugin's own calls (so CRI's remote snapshots live in k8s.io) but not of
   * requests it serves for ctr or nerdctl. A parent named alike in several
   * namespaces is a committed chain ID, the same content in each: the default
   * namespace's, else the first, serves.
   */
  private parentRow(scope: Scope, parent: string): Row {
    const row =
      scope.namespace !== undefined
        ? this.#byKey.get(scope.namespace, parent)
        : this.#byKeyAnyNs.all(parent).sort((a, b) => Number(b.namespace === DEFAULT_NAMESPACE) - Number(a.namespace === DEFAULT_NAMESPACE))[0];
    if (!row) throw new NotFoundError(`parent snapshot ${JSON.stringify(parent)} does not exist`);
    return row;
  }

  private mustRow(id: number): Row {
    const row = this.#byId.get(id);
    if (!row) throw new NotFoundError(`snapshot id ${id} vanished`);
    return row;
  }

  private record(row: Row, withParents = true): SnapshotRecord {
    const parentIds: number[] = [];
    for (let pid = withParents ? row.parent_id : null; pid !== null; ) {
      parentIds.push(pid);
      pid = this.mustRow(pid).parent_id;
    }
    return {
      id: row.id,
      namespace: row.namespace,
      parentIds,
      usage: { size: row.size, inodes: row.inodes },
      info: {
        name: row.key,
        parent: row.parent_key ?? "",
        kind: row.kind,
        created: BigInt(row.created_ns),
        updated: BigInt(row.updated_ns),
        labels: JSON.parse(row.labels) as Labels,
      },
    };
  }
}

/** containerd's limit (labels.Validate): key and value together at most 4096 bytes. */
export const MAX_LABEL_BYTES = 4096;

export function validateLabels(labels: Labels): void {
  for (const [k, v] of Object.entries(labels)) {
    const n = Buffer.byteLength(k) + Buffer.byteLength(v);
    if (n > MAX_LABEL_BYTES) {
      throw new InvalidArgumentError(
        `label ${JSON.stringify(k.length > 64 ? k.slice(0, 64) + "…" : k)} is ${n} bytes with its value; containerd allows at most ${MAX_LABEL_BYTES}`,
      );
    }
  }
}
