// MetaStore owns the SQLite handle that holds snapshot metadata under --root.
// WAL mode and synchronous=FULL make every committed transaction survive a
// SIGKILL (and power loss); the schema is versioned with `user_version` so a
// newer augur can migrate an older root in place.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

export type Db = Database.Database;

const MIGRATIONS: string[] = [
  // v1: one row per snapshot. `id` names the directory under <root>/s and
  // survives Commit (the active key's directory becomes the committed one).
  `CREATE TABLE snapshots (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     namespace TEXT NOT NULL,
     key TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
     parent_id INTEGER REFERENCES snapshots(id),
     created_ms REAL NOT NULL,
     updated_ms REAL NOT NULL,
     labels TEXT NOT NULL DEFAULT '{}',
     size INTEGER NOT NULL DEFAULT 0,
     inodes INTEGER NOT NULL DEFAULT 0,
     UNIQUE (namespace, key)
   );
   CREATE INDEX snapshots_parent ON snapshots(parent_id);`,
  // v2: times in nanoseconds since the epoch (containerd keeps Go's time.Time,
  // and its suite compares them to nanosecond clock readings). INTEGER columns,
  // since a REAL cannot hold today's nanosecond count exactly; v1's millisecond
  // values carry over multiplied.
  `ALTER TABLE snapshots ADD COLUMN created_ns INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE snapshots ADD COLUMN updated_ns INTEGER NOT NULL DEFAULT 0;
   UPDATE snapshots SET created_ns = CAST(round(created_ms) AS INTEGER) * 1000000,
                        updated_ns = CAST(round(updated_ms) AS INTEGER) * 1000000;
   ALTER TABLE snapshots DROP COLUMN created_ms;
   ALTER TABLE snapshots DROP COLUMN updated_ms;`,
];

export class MetaStore {
  readonly db: Db;

  constructor(file: string) {
    mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
  }

  /** Runs `fn` in one write transaction; a throw rolls everything back. */
  write<T>(fn: (db: Db) => T): T {
    return this.db.transaction(fn).immediate(this.db);
  }

  /** Runs `fn` in one read transaction (a consistent snapshot of the table). */
  read<T>(fn: (db: Db) => T): T {
    return this.db.transaction(fn).deferred(this.db);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private migrate(): void {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`metadata schema version ${version} is newer than this augur understands (${MIGRATIONS.length}); upgrade augur`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.write((db) => {
        db.exec(MIGRATIONS[v] ?? "");
        db.pragma(`user_version = ${v + 1}`);
      });
    }
  }
}
