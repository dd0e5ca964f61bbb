// The ledger of a cache directory, shared by every augur that uses it: what
// files the directory holds (size, recency), which layers live instances pin,
// and which byte ranges an instance is fetching right now. One SQLite file
// beside the content (<cache>/ledger.db, WAL), so the byte bound holds for the
// directory as a whole and no instance evicts what a neighbour's incomplete
// mount still needs.
//
// The files stay the truth: the ledger is reconciled with them at open (rows
// for files it lacks, none for files gone), and rebuilt from them when it is
// missing or damaged. Pins and claims are leases: each instance is an owner
// row it refreshes every HEARTBEAT_MS; an owner whose process is gone (same
// kernel: its pid no longer runs with its start time) or that has not been
// seen for OWNER_TTL_MS (any kernel) holds nothing.
//
// WAL needs every process on one kernel (its -shm file is shared memory):
// augurs on one host, in containers or not. VMs sharing a directory over
// virtiofs or NFS are not covered.
import Database from "better-sqlite3";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readlinkSync, renameSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";

const log = logger("cache");

export const LEDGER_FILE = "ledger.db";
const HEARTBEAT_MS = 5_000;
const OWNER_TTL_MS = 30_000;
/** A claim older than this is abandoned: its owner hung mid-fetch. */
const CLAIM_TTL_MS = 60_000;
/** Recency updates wait this long in memory: a FUSE read must not wait for SQLite. */
const TOUCH_FLUSH_MS = 1_000;

export type LedgerKind = "blobs" | "chunks" | "indexes";

export interface LedgerFile {
  rel: string;
  kind: LedgerKind;
  /** Layer hex digest. */
  layer: string;
  size: number;
  /** Last use, microseconds since the epoch. */
  usedUs: number;
}

/** A file found on disk, for reconciling. */
export interface FoundFile {
  rel: string;
  layer: string;
  size: number;
  mtimeMs: number;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS files (
    rel TEXT PRIMARY KEY, kind TEXT NOT NULL, layer TEXT NOT NULL,
    start INTEGER, end INTEGER, size INTEGER NOT NULL, used_us INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS files_layer ON files(layer, kind);
  CREATE INDEX IF NOT EXISTS files_used ON files(used_us);
  CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY, pid INTEGER NOT NULL, started TEXT NOT NULL, kernel TEXT NOT NULL, seen_ms INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS pins (
    layer TEXT NOT NULL, owner TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (layer, owner));
  CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
  INSERT OR IGNORE INTO totals (id, bytes) VALUES (0, 0);
  CREATE TRIGGER IF NOT EXISTS files_added AFTER INSERT ON files BEGIN UPDATE totals SET bytes = bytes + new.size; END;
  CREATE TRIGGER IF NOT EXISTS files_removed AFTER DELETE ON files BEGIN UPDATE totals SET bytes = bytes - old.size; END;
  CREATE TRIGGER IF NOT EXISTS files_resized AFTER UPDATE OF size ON files BEGIN UPDATE totals SET bytes = bytes - old.size + new.size; END;
  CREATE TABLE IF NOT EXISTS claims (
    layer TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, owner TEXT NOT NULL, since_ms INTEGER NOT NULL,
    PRIMARY KEY (layer, start, end));`;
const SCHEMA_VERSION = 1;

/** Which kernel and pid namespace this process runs in: pids compare only within one. */
function kernelId(): string {
  try {
    return `${readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()}/${readlinkSync("/proc/self/ns/pid")}`;
  } catch {
    return "unknown";
  }
}

/** A process's start time (clock ticks since boot, /proc/<pid>/stat field 22), or undefined if it does not run. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) may hold spaces and parentheses: count from its end
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

export class CacheLedger {
  readonly owner: string;
  readonly #db: Database.Database;
  readonly #kernel = kernelId();
  readonly #touches = new Map<string, number>();
  readonly #timers: NodeJS.Timeout[] = [];
  /** Prepared statements by their SQL: preparing parses the SQL, and claims and stores run per fetch. */
  readonly #statements = new Map<string, Database.Statement>();
  #lastUse = 0;

  /** Opens (or creates, or rebuilds) the ledger of `dir`; `scan` lists the files on disk. */
  constructor(readonly dir: string, scan: () => FoundFile[]) {
    const file = join(dir, LEDGER_FILE);
    const fresh = !existsSync(file);
    let db: Database.Database;
    try {
      db = CacheLedger.#open(file);
    } catch (err) {
      // A damaged ledger is only a cache of what the files say: set it aside and rebuild.
      const aside = `${file}.damaged-${Date.now()}`;
      log.warn("cache ledger damaged; rebuilding it from the cache files", { file, movedTo: aside, error: errorMessage(err) });
      for (const suffix of ["", "-wal", "-shm"]) if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
      db = CacheLedger.#open(file);
    }
    this.#db = db;
    this.owner = `${process.pid}-${randomBytes(4).toString("hex")}`;
    this.#sql("INSERT INTO owners (owner, pid, started, kernel, seen_ms) VALUES (?, ?, ?, ?, ?)")
      .run(this.owner, process.pid, startTime(process.pid) ?? "", this.#kernel, Date.now());
    const found = this.#reconcile(scan());
    if (fresh && found > 0) log.info("cache ledger rebuilt from the cache files", { dir, files: found });
    const beat = setInterval(() => this.#heartbeat(), HEARTBEAT_MS);
    const flush = setInterval(() => this.flushTouches(), TOUCH_FLUSH_MS);
    beat.unref();
    flush.unref();
    this.#timers.push(beat, flush);
  }

  static #open(file: string): Database.Database {
    const db = new Database(file);
    try {
      db.pragma("journal_mode = WAL");
      // a ledger lost in a crash is rebuilt from the files: no fsync per write
      db.pragma("synchronous = NORMAL");
      db.pragma("busy_timeout = 10000");
      const check = db.pragma("quick_check", { simple: true });
      if (check !== "ok") throw new Error(`quick_check: ${String(check)}`);
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version > SCHEMA_VERSION) throw new Error(`ledger schema version ${version} is newer than this augur's (${SCHEMA_VERSION})`);
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Makes the rows match the files: adds what is on disk, drops what is not. Returns the files found. */
  #reconcile(found: FoundFile[]): number {
    const insert = this.#sql(
      "INSERT OR IGNORE INTO files (rel, kind, layer, start, end, size, used_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    const drop = this.#sql("DELETE FROM files WHERE rel = ?");
    this.#write(() => {
      const onDisk = new Set<string>();
      for (const f of found) {
        onDisk.add(f.rel);
        const { kind, start, end } = parseRel(f.rel);
        insert.run(f.rel, kind, f.layer, start, end, f.size, Math.round(f.mtimeMs * 1000));
      }
      for (const { rel } of this.#sql("SELECT rel FROM files").all() as { rel: string }[]) if (!onDisk.has(rel)) drop.run(rel);
      // the running total starts right whatever an older ledger held
      this.#sql("UPDATE totals SET bytes = (SELECT coalesce(sum(size), 0) FROM files)").run();
    });
    return found.length;
  }

  /**
   * Recency stamps: microseconds since the epoch, strictly increasing in this
   * instance, so two uses in one millisecond keep their order.
   */
  #useStamp(): number {
    this.#lastUse = Math.max(Date.now() * 1000, this.#lastUse + 1);
    return this.#lastUse;
  }

  #sql(text: string): Database.Statement {
    let st = this.#statements.get(text);
    if (!st) {
      st = this.#db.prepare(text);
      this.#statements.set(text, st);
    }
    return st;
  }

  #write<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  /** Records a file just renamed into place (or, if known, its use). */
  add(rel: string, layer: string, size: number): void {
    const { kind, start, end } = parseRel(rel);
    this.#sql("INSERT INTO files (rel, kind, layer, start, end, size, used_us) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(rel) DO UPDATE SET used_us = excluded.used_us")
      .run(rel, kind, layer, start, end, size, this.#useStamp());
  }

  /** Notes a use of `rel`; written with the next flush. */
  touch(rel: string): void {
    this.#touches.set(rel, this.#useStamp());
  }

  flushTouches(): void {
    if (this.#touches.size === 0 || !this.#db.open) return;
    const update = this.#sql("UPDATE files SET used_us = max(used_us, ?) WHERE rel = ?");
    const batch = [...this.#touches];
    this.#touches.clear();
    try {
      this.#write(() => {
        for (const [rel, ms] of batch) update.run(ms, rel);
      });
    } catch (err) {
      log.debug("cache recency not recorded", { error: errorMessage(err) });
    }
  }

  forget(rel: string): void {
    this.#sql("DELETE FROM files WHERE rel = ?").run(rel);
  }

  has(rel: string): boolean {
    return this.#sql("SELECT 1 FROM files WHERE rel = ?").get(rel) !== undefined;
  }

  /** Sorted [start, end) chunk ranges of layer `hex`, as every instance has stored them. */
  chunkRanges(hex: string): [number, number][] {
    return (this.#sql("SELECT start, end FROM files WHERE layer = ? AND kind = 'chunks' ORDER BY start, end DESC").all(hex) as { start: number; end: number }[])
      .map((r) => [r.start, r.end]);
  }

  /** Every file, or those of layer `hex`, least recently used first. */
  files(hex?: string): LedgerFile[] {
    const rows = (hex === undefined
      ? this.#sql("SELECT rel, kind, layer, size, used_us FROM files ORDER BY used_us").all()
      : this.#sql("SELECT rel, kind, layer, size, used_us FROM files WHERE layer = ? ORDER BY used_us").all(hex)) as {
      rel: string; kind: LedgerKind; layer: string; size: number; used_us: number;
    }[];
    return rows.map((r) => ({ rel: r.rel, kind: r.kind, layer: r.layer, size: r.size, usedUs: r.used_us }));
  }

  /** Files and bytes by kind, over the directory. */
  totalsByKind(): { files: Record<LedgerKind, number>; bytes: Record<LedgerKind, number> } {
    const files = { blobs: 0, chunks: 0, indexes: 0 };
    const bytes = { blobs: 0, chunks: 0, indexes: 0 };
    for (const r of this.#sql("SELECT kind, count(*) AS n, coalesce(sum(size), 0) AS b FROM files GROUP BY kind").all() as { kind: LedgerKind; n: number; b: number }[]) {
      files[r.kind] = r.n;
      bytes[r.kind] = r.b;
    }
    return { files, bytes };
  }

  /** Bytes the directory holds (a running total the triggers keep). */
  usedBytes(): number {
    return (this.#sql("SELECT bytes FROM totals WHERE id = 0").get() as { bytes: number }).bytes;
  }

  pin(hex: string): void {
    this.#sql("INSERT INTO pins (layer, owner, n) VALUES (?, ?, 1) ON CONFLICT(layer, owner) DO UPDATE SET n = n + 1").run(hex, this.owner);
  }

  unpin(hex: string): void {
    if (!this.#db.open) return;
    this.#write(() => {
      this.#sql("UPDATE pins SET n = n - 1 WHERE layer = ? AND owner = ?").run(hex, this.owner);
      this.#sql("DELETE FROM pins WHERE n <= 0").run();
    });
  }

  /** Layers some live instance pins. */
  pinnedLayers(): string[] {
    this.#pruneOwners();
    return (this.#sql("SELECT DISTINCT layer FROM pins ORDER BY layer").all() as { layer: string }[]).map((r) => r.layer);
  }

  /**
   * Takes the least recently used files of unpinned layers out of the ledger
   * until the directory fits `maxBytes`; returns them for the caller to unlink.
   * One transaction, so two instances never pick the same file.
   */
  evict(maxBytes: number): LedgerFile[] {
    // the common case on every stored file: under the bound, nothing to order or prune
    if (this.usedBytes() <= maxBytes) return [];
    this.flushTouches();
    this.#pruneOwners();
    return this.#write(() => {
      let used = this.usedBytes();
      if (used <= maxBytes) return [];
      const out: LedgerFile[] = [];
      const candidates = this.#db
        .prepare("SELECT rel, kind, layer, size, used_us FROM files WHERE layer NOT IN (SELECT layer FROM pins) ORDER BY used_us")
        .iterate() as IterableIterator<{ rel: string; kind: LedgerKind; layer: string; size: number; used_us: number }>;
      const victims: { rel: string; kind: LedgerKind; layer: string; size: number; used_us: number }[] = [];
      for (const r of candidates) {
        if (used <= maxBytes) break;
        victims.push(r);
        used -= r.size;
      }
      const drop = this.#sql("DELETE FROM files WHERE rel = ?");
      for (const r of victims) {
        drop.run(r.rel);
        out.push({ rel: r.rel, kind: r.kind, layer: r.layer, size: r.size, usedUs: r.used_us });
      }
      return out;
    });
  }

  /**
   * Claims the fetch of [start, end) of layer `hex`. Returns true when this
   * instance should fetch it; false while a live neighbour is fetching an
   * overlapping range (the caller waits for its file instead).
   */
  claim(hex: string, start: number, end: number): boolean {
    // a claim of a neighbour that died goes with it (and its owner row), not only when it expires
    this.#pruneOwners();
    return this.#write(() => {
      const now = Date.now();
      this.#sql("DELETE FROM claims WHERE since_ms < ? OR owner NOT IN (SELECT owner FROM owners)").run(now - CLAIM_TTL_MS);
      const other = this.#sql("SELECT 1 FROM claims WHERE layer = ? AND start < ? AND end > ? AND owner != ? LIMIT 1")
        .get(hex, end, start, this.owner);
      if (other) return false;
      this.#sql("INSERT OR REPLACE INTO claims (layer, start, end, owner, since_ms) VALUES (?, ?, ?, ?, ?)").run(hex, start, end, this.owner, now);
      return true;
    });
  }

  release(hex: string, start: number, end: number): void {
    if (!this.#db.open) return;
    this.#sql("DELETE FROM claims WHERE layer = ? AND start = ? AND end = ? AND owner = ?").run(hex, start, end, this.owner);
  }

  /** Live instances using the directory, this one included. */
  owners(): number {
    this.#pruneOwners();
    return (this.#sql("SELECT count(*) AS n FROM owners").get() as { n: number }).n;
  }

  /** Drops this instance's pins and claims. */
  close(): void {
    for (const t of this.#timers) clearInterval(t);
    if (!this.#db.open) return;
    this.flushTouches();
    this.#write(() => {
      this.#sql("DELETE FROM pins WHERE owner = ?").run(this.owner);
      this.#sql("DELETE FROM claims WHERE owner = ?").run(this.owner);
      this.#sql("DELETE FROM owners WHERE owner = ?").run(this.owner);
    });
    this.#db.close();
  }

  #heartbeat(): void {
    if (!this.#db.open) return;
    try {
      this.#sql("UPDATE owners SET seen_ms = ? WHERE owner = ?").run(Date.now(), this.owner);
    } catch (err) {
      log.debug("cache ledger heartbeat failed", { error: errorMessage(err) });
    }
  }

  /** Removes owners that are gone, with their pins and claims. */
  #pruneOwners(): void {
    const now = Date.now();
    const rows = this.#sql("SELECT owner, pid, started, kernel, seen_ms FROM owners WHERE owner != ?").all(this.owner) as {
      owner: string; pid: number; started: string; kernel: string; seen_ms: number;
    }[];
    const dead = rows.filter((o) => now - o.seen_ms > OWNER_TTL_MS || (o.kernel === this.#kernel && startTime(o.pid) !== o.started));
    if (dead.length === 0) return;
    this.#write(() => {
      for (const o of dead) {
        this.#sql("DELETE FROM pins WHERE owner = ?").run(o.owner);
        this.#sql("DELETE FROM claims WHERE owner = ?").run(o.owner);
        this.#sql("DELETE FROM owners WHERE owner = ?").run(o.owner);
      }
    });
    log.info("released the pins and claims of cache users that are gone", { owners: dead.map((o) => o.owner).join(",") });
  }
}

/** The kind of a cache file and, for a chunk, its byte range. */
function parseRel(rel: string): { kind: LedgerKind; start: number | null; end: number | null } {
  const m = /^chunks\/sha256\/[0-9a-f]+\/(\d+)-(\d+)$/.exec(rel);
  if (m) return { kind: "chunks", start: Number(m[1]), end: Number(m[2]) };
  return { kind: rel.startsWith("blobs/") ? "blobs" : "indexes", start: null, end: null };
}
