// The node-local cache: content-addressed layer data on disk, bounded in
// bytes, least recently used first out.
//
//   blobs/sha256/<hex>                 a whole layer blob, verified against its digest
//   chunks/sha256/<hex>/<start>-<end>  verified compressed bytes [start, end) of a layer
//   indexes/sha256/<hex>               the seekable index of layer <hex> (tar-index-codec)
//   wip/                               files being written
//
//   ledger.db                          sizes, recency, pins and fetch claims of every
//                                      augur using the directory (cache-ledger.ts)
//
// Every file is written under wip/ and renamed into place, so a reader (this
// augur or another one sharing the directory) sees a whole file or none; a
// file that vanishes under a reader (evicted by a neighbour) is a miss.
// Layers in use by a mount that is not yet complete are pinned: eviction, by
// any augur on the directory, skips them, because their mount still needs what
// was fetched. The byte bound holds for the directory.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, openSync, readdirSync, rmSync, statSync, type WriteStream } from "node:fs";
import { open, readFile, rename, rm, stat, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { FailedPreconditionError, InvalidArgumentError, UnavailableError, errorMessage } from "../errdefs/errors.js";
import { sha256Digest } from "../util/digest.js";
import { logger } from "../util/logging.js";
import { CacheLedger, type FoundFile } from "./cache-ledger.js";

const log = logger("cache");
const DIGEST = /^sha256:([0-9a-f]{64})$/;
/** A wip file this old belongs to a writer that died. */
const STALE_WIP_MS = 24 * 3600 * 1000;

export type CacheKind = "blobs" | "chunks" | "indexes";

export interface CacheStatus {
  dir: string;
  maxBytes: number;
  usedBytes: number;
  files: Record<CacheKind, number>;
  bytes: Record<CacheKind, number>;
  /** Layers this instance pins. */
  pinnedLayers: string[];
  /** Layers any live augur on the directory pins. */
  directoryPinnedLayers: string[];
  /** Live augurs using the directory, this one included. */
  instances: number;
  /** This instance's reads. */
  hits: number;
  misses: number;
  /** hits / (hits + misses); 0 before any read. */
  hitRate: number;
  evictions: number;
}

/** A blob being written whole; `commit` publishes it, `abort` drops it. */
export interface BlobWriter {
  write(chunk: Buffer): Promise<void>;
  commit(): Promise<void>;
  abort(): void;
}

/** Waiting for a neighbour's fetch of the same bytes gives up after this long and fetches itself. */
const NEIGHBOUR_WAIT_MS = 20_000;
const NEIGHBOUR_POLL_MS = 20;
/** A long claim (a whole-blob stream) is renewed this often, well inside the ledger's claim lifetime. */
const CLAIM_RENEW_MS = 15_000;

/** A fetch this instance claimed; `release` once its bytes are stored (or the fetch failed). */
export interface RangeClaim {
  release(): void;
}

export class LayerCache {
  readonly dir: string;
  readonly maxBytes: number;
  /** Sizes, recency, pins and claims, shared with every augur on the directory (cache-ledger.ts). */
  readonly #ledger: CacheLedger;
  /** Sorted [start, end) chunk ranges per layer hex: what this instance knows; refreshed from the ledger on a miss. */
  readonly #ranges = new Map<string, [number, number][]>();
  readonly #pins = new Map<string, number>();
  /** Whole blobs hashed after a read failed its check (dropRange), by file and mtime. */
  readonly #hashed = new Map<string, { mtimeMs: number; ok: Promise<boolean> }>();
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  /** `evict: false` opens without enforcing the bound (augur cache status, ls, verify). */
  constructor(dir: string, maxBytes: number, opts: { evict?: boolean } = {}) {
    if (!(maxBytes > 0)) throw new InvalidArgumentError(`cache size must be positive, got ${maxBytes}`);
    this.dir = dir;
    this.maxBytes = maxBytes;
    for (const d of ["blobs/sha256", "chunks/sha256", "indexes/sha256", "wip"]) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
    this.#ledger = new CacheLedger(dir, () => this.#scan());
    if (opts.evict ?? true) this.#evict();
  }

  /** Path of the whole verified blob, if cached. */
  async blobPath(digest: string): Promise<string | undefined> {
    const rel = `blobs/sha256/${hexOf(digest)}`;
    try {
      await stat(join(this.dir, rel));
      this.#ledger.touch(rel);
      return join(this.dir, rel);
    } catch {
      this.#forget(rel);
      return undefined;
    }
  }

  /**
   * Stores a whole blob from a stream that fails unless its bytes are the
   * blob's (a DigestVerifier in it); returns its size. Nothing is kept if the
   * stream fails or brings other than `size` bytes. A failure of this cache's
   * own disk is a CacheWriteError; any other came from the stream.
   */
  async storeBlob(digest: string, body: AsyncIterable<Buffer> | Iterable<Buffer>, size: number): Promise<number> {
    let writer: BlobWriter | undefined;
    const local = (err: unknown): never => {
      const why = errorMessage(err);
      throw new CacheWriteError(why.includes(this.dir) ? why : `cache directory ${this.dir}: storing layer blob ${digest}: ${why}`, { cause: err });
    };
    try {
      try {
        writer = this.blobWriter(digest);
      } catch (err) {
        local(err);
      }
      let got = 0;
      for await (const chunk of body) {
        got += chunk.length;
        await (writer as BlobWriter).write(chunk).catch(local);
      }
      if (got !== size) throw new FailedPreconditionError(`layer blob ${digest} is ${got} bytes, the manifest says ${size}`);
      await (writer as BlobWriter).commit().catch(local);
      return got;
    } catch (err) {
      writer?.abort();
      throw err;
    }
  }

  /**
   * Keeps a small blob held in memory (an artifact's profile or index) as a
   * whole blob, so --serve-cache passes it on to peers; checked against its
   * digest first. Never throws: a blob not kept is fetched elsewhere.
   */
  async keepBlob(digest: string, bytes: Buffer): Promise<void> {
    if (sha256Digest(bytes) !== digest) {
      log.warn("blob not kept: its bytes do not match its digest", { digest });
      return;
    }
    try {
      if (await this.blobPath(digest)) return;
      await this.storeBlob(digest, [bytes], bytes.length);
    } catch (err) {
      log.warn("blob not kept in the cache", { digest, error: errorMessage(err) });
    }
  }

  /** Writes a whole blob through wip/; the caller has verified it before `commit`. */
  blobWriter(digest: string): BlobWriter {
    const rel = `blobs/sha256/${hexOf(digest)}`;
    const tmp = this.#wipPath();
    // Opened here, not by the stream: a stream opens its file later, so an
    // abort before that would remove nothing and then leave the file in wip/.
    const out: WriteStream = createWriteStream(tmp, { fd: openSync(tmp, "wx", 0o600) });
    let size = 0;
    let failed: Error | undefined;
    out.on("error", (err) => (failed = err));
    const what = `layer blob ${digest}`;
    return {
      write: async (chunk) => {
        if (failed) throw spaceError(failed, this.dir, what);
        size += chunk.length;
        if (out.write(chunk)) return;
        // a full disk fails the stream: its error, not a drain that never comes
        await new Promise<void>((resolve, reject) => {
          const onError = (err: Error): void => reject(spaceError(err, this.dir, what));
          out.once("error", onError);
          out.once("drain", () => {
            out.off("error", onError);
            resolve();
          });
        });
      },
      commit: async () => {
        await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(spaceError(err, this.dir, what)) : resolve())));
        if (failed) throw spaceError(failed, this.dir, what);
        await rename(tmp, join(this.dir, rel));
        this.#add(rel, size, hexOf(digest));
      },
      abort: () => {
        out.destroy();
        rmSync(tmp, { force: true });
      },
    };
  }

  /** Bytes [offset, offset+length) of a layer from its whole blob or its chunks; undefined unless all are here. */
  async readRange(digest: string, offset: number, length: number, opts: { wholeOnly?: boolean } = {}): Promise<Buffer | undefined> {
    const hex = hexOf(digest);
    // The ledger knows the whole blob if this augur or a neighbour on the
    // directory stored it: a layer read by range (no blob here) asks no disk.
    const blob = `blobs/sha256/${hex}`;
    const whole = this.#ledger.has(blob) ? await readAt(join(this.dir, blob), offset, length) : undefined;
    if (whole) {
      this.#ledger.touch(blob);
      this.#hits++;
      return whole;
    }
    // chunks may hold what `augur cache sync` copied unchecked: not for a reader whose index vouches for nothing
    if (opts.wholeOnly) {
      this.#misses++;
      return undefined;
    }
    // chunks a neighbour stored are in the ledger, not yet in #ranges
    const pieces = this.#cover(hex, offset, offset + length) ?? (this.#refresh(hex), this.#cover(hex, offset, offset + length));
    if (!pieces) {
      this.#misses++;
      return undefined;
    }
    const out = Buffer.alloc(length);
    for (const [s, e] of pieces) {
      const rel = `chunks/sha256/${hex}/${s}-${e}`;
      const lo = Math.max(offset, s);
      const hi = Math.min(offset + length, e);
      const part = await readAt(join(this.dir, rel), lo - s, hi - lo);
      if (!part || part.length !== hi - lo) {
        this.#forget(rel);
        this.#misses++;
        return undefined;
      }
      this.#ledger.touch(rel);
      part.copy(out, lo - offset);
    }
    this.#hits++;
    return out;
  }

  /**
   * Before fetching [offset, offset+length) of a layer from outside: if a
   * neighbour on the directory is fetching those bytes, waits (bounded) for
   * them to land and resolves undefined (read them with readRange); otherwise
   * claims the fetch for this instance.
   */
  async claimRange(digest: string, offset: number, length: number): Promise<RangeClaim | undefined> {
    const hex = hexOf(digest);
    return this.#claim(hex, offset, offset + length, NEIGHBOUR_WAIT_MS, () => {
      this.#refresh(hex);
      return this.#cover(hex, offset, offset + length) !== undefined;
    });
  }

  /**
   * Before streaming a whole blob of `size` bytes: waits while a live
   * neighbour streams it, and resolves undefined once it is in the cache
   * (blobPath); otherwise claims the stream, kept alive until released.
   */
  async claimBlob(digest: string, size: number): Promise<RangeClaim | undefined> {
    const hex = hexOf(digest);
    const rel = `blobs/sha256/${hex}`;
    // no deadline of our own: a stream takes as long as the link needs, and a
    // neighbour that dies or hangs loses its claim (cache-ledger.ts)
    return this.#claim(hex, 0, Math.max(1, size), Infinity, () => this.#ledger.has(rel), { keepAlive: true, pollMs: 100 });
  }

  async #claim(
    hex: string, start: number, end: number, waitMs: number, landed: () => boolean,
    { keepAlive = false, pollMs = NEIGHBOUR_POLL_MS }: { keepAlive?: boolean; pollMs?: number } = {},
  ): Promise<RangeClaim | undefined> {
    const deadline = Date.now() + waitMs;
    let waited = false;
    while (!this.#ledger.claim(hex, start, end)) {
      waited = true;
      if (Date.now() > deadline) {
        log.warn("a neighbour's fetch of these layer bytes did not land in time; fetching them here", { layer: `sha256:${hex}`, start, end });
        break;
      }
      await sleep(pollMs);
      if (landed()) return undefined;
    }
    if (waited && landed()) {
      this.#ledger.release(hex, start, end);
      return undefined;
    }
    const renew = keepAlive ? setInterval(() => this.#ledger.claim(hex, start, end), CLAIM_RENEW_MS) : undefined;
    renew?.unref();
    let done = false;
    return {
      release: () => {
        if (done) return;
        done = true;
        clearInterval(renew);
        this.#ledger.release(hex, start, end);
      },
    };
  }

  /** Stores verified compressed bytes of a layer starting at `offset`. */
  async storeRange(digest: string, offset: number, data: Buffer): Promise<void> {
    const hex = hexOf(digest);
    const end = offset + data.length;
    if (data.length === 0 || this.#ledger.has(`blobs/sha256/${hex}`) || this.#cover(hex, offset, end)) return;
    const rel = `chunks/sha256/${hex}/${offset}-${end}`;
    mkdirSync(join(this.dir, "chunks/sha256", hex), { recursive: true, mode: 0o700 });
    await this.#publish(rel, data);
    this.#add(rel, data.length, hex);
  }

  async hasIndex(digest: string): Promise<boolean> {
    try {
      await stat(join(this.dir, `indexes/sha256/${hexOf(digest)}`));
      return true;
    } catch {
      return false;
    }
  }

  async readIndex(digest: string): Promise<Buffer | undefined> {
    const rel = `indexes/sha256/${hexOf(digest)}`;
    try {
      const bytes = await readFile(join(this.dir, rel));
      this.#ledger.touch(rel);
      return bytes;
    } catch {
      this.#forget(rel);
      return undefined;
    }
  }

  async storeIndex(digest: string, bytes: Buffer): Promise<void> {
    const rel = `indexes/sha256/${hexOf(digest)}`;
    await this.#publish(rel, bytes);
    this.#add(rel, bytes.length, hexOf(digest));
  }

  /**
   * Drops what the cache holds under bytes [offset, offset+length) of a layer:
   * they failed their check when read (the disk or a writer spoiled them), so
   * the next read fetches them again. True if anything was dropped. A whole
   * blob is hashed first and kept when it still matches its digest: then the
   * check itself was wrong (an index made elsewhere lied), not the bytes.
   */
  async dropRange(digest: string, offset: number, length: number): Promise<boolean> {
    const hex = hexOf(digest);
    const end = offset + length;
    let dropped = false;
    for (const f of this.#ledger.files(hex)) {
      const r = chunkBounds(f.rel);
      const overlaps = f.kind === "blobs" || (!!r && r[0] < end && r[1] > offset);
      if (!overlaps) continue;
      if (f.kind === "blobs" && (await this.#intact(f.rel, hex))) continue;
      this.#remove(f.rel);
      dropped = true;
      log.warn("cached layer bytes failed their check on read; dropped, fetching them again", { file: f.rel });
    }
    return dropped;
  }

  /** Whether a whole blob still hashes to its digest: one hash per file at a time, remembered while the file is unchanged. */
  #intact(rel: string, hex: string): Promise<boolean> {
    const path = join(this.dir, rel);
    let mtime: number;
    try {
      mtime = statSync(path).mtimeMs;
    } catch {
      return Promise.resolve(false);
    }
    const known = this.#hashed.get(rel);
    if (known && known.mtimeMs === mtime) return known.ok;
    const ok = sha256File(path).then((h) => h === hex, () => false);
    this.#hashed.set(rel, { mtimeMs: mtime, ok });
    if (this.#hashed.size > 64) this.#hashed.delete(this.#hashed.keys().next().value as string);
    return ok;
  }

  /** The whole blob opened for reading, if the cache holds it (peer/blob-server.ts): eviction cannot take it from under the handle. */
  async openBlob(digest: string): Promise<OpenBlob | undefined> {
    const rel = `blobs/sha256/${hexOf(digest)}`;
    let handle: FileHandle;
    try {
      handle = await open(join(this.dir, rel), "r");
    } catch {
      return undefined;
    }
    try {
      const size = (await handle.stat()).size;
      this.#ledger.touch(rel);
      return { handle, size };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** The [start, end) chunk ranges the directory holds for a layer, merged where they touch. */
  heldRanges(digest: string): [number, number][] {
    const hex = hexOf(digest);
    this.#refresh(hex);
    const out: [number, number][] = [];
    for (const [s, e] of this.#ranges.get(hex) ?? []) {
      const last = out[out.length - 1];
      if (last && s <= last[1]) last[1] = Math.max(last[1], e);
      else out.push([s, e]);
    }
    return out;
  }

  /** Drops everything cached for a layer but its index (its data failed verification, or `augur cache evict`). */
  async dropLayer(digest: string): Promise<void> {
    const hex = hexOf(digest);
    for (const f of this.#ledger.files(hex)) if (f.kind !== "indexes") this.#remove(f.rel);
    this.#ranges.delete(hex);
    await rm(join(this.dir, "chunks/sha256", hex), { recursive: true, force: true });
  }

  /** Keeps a layer's data from eviction, by any augur on the directory, until the returned function is called. */
  pin(digest: string): () => void {
    const hex = hexOf(digest);
    this.#pins.set(hex, (this.#pins.get(hex) ?? 0) + 1);
    this.#ledger.pin(hex);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#pins.get(hex) ?? 1) - 1;
      if (n <= 0) this.#pins.delete(hex);
      else this.#pins.set(hex, n);
      this.#ledger.unpin(hex);
    };
  }

  /** The directory's figures (every augur on it) and this instance's hits, misses and evictions. */
  status(): CacheStatus {
    const { files, bytes } = this.#ledger.totalsByKind();
    return {
      dir: this.dir, maxBytes: this.maxBytes, usedBytes: bytes.blobs + bytes.chunks + bytes.indexes, files, bytes,
      pinnedLayers: [...this.#pins.keys()].sort().map((h) => `sha256:${h}`),
      directoryPinnedLayers: this.#ledger.pinnedLayers().map((h) => `sha256:${h}`),
      instances: this.#ledger.owners(),
      hits: this.#hits, misses: this.#misses, hitRate: this.#hits + this.#misses ? this.#hits / (this.#hits + this.#misses) : 0, evictions: this.#evictions,
    };
  }

  /** What the directory holds per layer, most recently used first. */
  layers(): CachedLayer[] {
    const pinned = new Set(this.#ledger.pinnedLayers());
    const by = new Map<string, CachedLayer>();
    for (const f of this.#ledger.files()) {
      const l = by.get(f.layer) ?? { layer: `sha256:${f.layer}`, blob: false, index: false, chunks: 0, bytes: 0, lastUsed: new Date(0), pinned: pinned.has(f.layer) };
      if (f.kind === "blobs") l.blob = true;
      else if (f.kind === "indexes") l.index = true;
      else l.chunks++;
      l.bytes += f.size;
      if (f.usedUs / 1000 > l.lastUsed.getTime()) l.lastUsed = new Date(f.usedUs / 1000);
      by.set(f.layer, l);
    }
    return [...by.values()].sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime());
  }

  /** Removes everything the directory holds for a layer, its index too; refused while a live augur pins it. */
  async evictLayer(digest: string): Promise<number> {
    const hex = hexOf(digest);
    if (this.#ledger.pinnedLayers().includes(hex)) {
      throw new FailedPreconditionError(`layer ${digest} is in use by a mount that is not complete yet; it can be evicted once its mount is done or gone`);
    }
    let bytes = 0;
    for (const f of this.#ledger.files(hex)) {
      bytes += f.size;
      this.#remove(f.rel);
    }
    this.#ranges.delete(hex);
    await rm(join(this.dir, "chunks/sha256", hex), { recursive: true, force: true });
    return bytes;
  }

  /**
   * Checks every file against its name: a whole blob's sha256 against its
   * digest, a chunk's size against its range. What fails is removed (fetched
   * again when next needed).
   */
  async verify(): Promise<{ checked: number; removed: string[] }> {
    const removed: string[] = [];
    let checked = 0;
    for (const f of this.#ledger.files()) {
      const path = join(this.dir, f.rel);
      let ok: boolean;
      try {
        if (f.kind === "blobs") ok = (await sha256File(path)) === f.layer;
        else if (f.kind === "chunks") {
          const r = chunkBounds(f.rel);
          ok = !!r && (await stat(path)).size === r[1] - r[0];
        } else ok = (await stat(path)).size > 0;
      } catch {
        ok = false;
      }
      checked++;
      if (!ok) {
        this.#remove(f.rel);
        removed.push(f.rel);
        log.warn("cache file failed its check; removed, it is fetched again when needed", { file: f.rel });
      }
    }
    return { checked, removed };
  }

  /** Removes wip files of writers that are gone and empty chunk directories, then evicts down to the bound. */
  gc(): { wip: number; dirs: number; evicted: number } {
    let wip = 0;
    let dirs = 0;
    for (const name of readdirSync(join(this.dir, "wip"))) {
      const pid = Number(name.split("-")[0]);
      // a wip file is being written by its pid while that process runs
      if (pid === process.pid || (pid > 0 && isRunning(pid))) continue;
      rmSync(join(this.dir, "wip", name), { force: true });
      wip++;
    }
    const pinned = new Set(this.#ledger.pinnedLayers());
    for (const hex of readdirSync(join(this.dir, "chunks/sha256"))) {
      const d = join(this.dir, "chunks/sha256", hex);
      if (readdirSync(d).length === 0 && !pinned.has(hex)) {
        rmSync(d, { recursive: true, force: true });
        dirs++;
      }
    }
    const before = this.#evictions;
    this.#evict();
    return { wip, dirs, evicted: this.#evictions - before };
  }

  /** Releases this instance's pins and claims in the shared ledger. */
  close(): void {
    this.#ledger.close();
  }

  async #publish(rel: string, data: Buffer): Promise<void> {
    const tmp = this.#wipPath();
    try {
      await writeFile(tmp, data, { mode: 0o600 });
      await rename(tmp, join(this.dir, rel));
    } catch (err) {
      await rm(tmp, { force: true });
      throw spaceError(err, this.dir, rel);
    }
  }

  #wipPath(): string {
    return join(this.dir, "wip", `${process.pid}-${randomBytes(6).toString("hex")}`);
  }

  /** The cached chunk ranges that together cover [start, end), or undefined. */
  #cover(hex: string, start: number, end: number): [number, number][] | undefined {
    const ranges = this.#ranges.get(hex) ?? [];
    const out: [number, number][] = [];
    let pos = start;
    for (const r of ranges) {
      if (r[1] <= pos || r[0] > pos) continue;
      out.push(r);
      pos = r[1];
      if (pos >= end) return out;
    }
    return pos >= end ? out : undefined;
  }

  #refresh(hex: string): void {
    this.#ranges.set(hex, this.#ledger.chunkRanges(hex));
  }

  #add(rel: string, size: number, layer: string): void {
    this.#ledger.add(rel, layer, size);
    const r = chunkBounds(rel);
    if (r) {
      const ranges = this.#ranges.get(layer) ?? [];
      ranges.push(r);
      ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
      this.#ranges.set(layer, ranges);
    }
    this.#evict();
  }

  #forget(rel: string): void {
    this.#ledger.forget(rel);
    const r = chunkBounds(rel);
    if (r) {
      const ranges = this.#ranges.get(rel.split("/")[2] as string) ?? [];
      const i = ranges.findIndex((x) => x[0] === r[0] && x[1] === r[1]);
      if (i >= 0) ranges.splice(i, 1);
    }
  }

  #remove(rel: string): void {
    this.#forget(rel);
    rmSync(join(this.dir, rel), { force: true });
  }

  /** Removes least recently used files of layers no augur on the directory pins, until the directory fits. */
  #evict(): void {
    for (const f of this.#ledger.evict(this.maxBytes)) {
      this.#remove(f.rel);
      this.#evictions++;
      log.debug("evicted", { file: f.rel, bytes: f.size });
    }
    const used = this.#ledger.usedBytes();
    if (used > this.maxBytes) log.warn("cache is over its size: everything left belongs to layers in use", { used, max: this.maxBytes });
  }

  /** The files on disk (stale wip files removed), for the ledger to reconcile with. */
  #scan(): FoundFile[] {
    const found: FoundFile[] = [];
    const now = Date.now();
    for (const name of readdirSync(join(this.dir, "wip"))) {
      const p = join(this.dir, "wip", name);
      try {
        if (now - statSync(p).mtimeMs > STALE_WIP_MS) rmSync(p, { force: true });
      } catch {
        // gone already: another instance cleaned it
      }
    }
    const add = (rel: string, layer: string): void => {
      try {
        const st = statSync(join(this.dir, rel));
        found.push({ rel, size: st.size, mtimeMs: st.mtimeMs, layer });
      } catch (err) {
        log.debug("cache file vanished while scanning", { file: rel, error: errorMessage(err) });
      }
    };
    for (const kind of ["blobs", "indexes"] as const) {
      for (const hex of readdirSync(join(this.dir, kind, "sha256"))) add(`${kind}/sha256/${hex}`, hex);
    }
    for (const hex of readdirSync(join(this.dir, "chunks/sha256"))) {
      for (const name of readdirSync(join(this.dir, "chunks/sha256", hex))) {
        if (/^\d+-\d+$/.test(name)) add(`chunks/sha256/${hex}/${name}`, hex);
      }
    }
    return found;
  }
}

/** This cache's own disk failed a write (full, read-only, gone): not the fault of where the bytes came from. */
export class CacheWriteError extends UnavailableError {}

/** A cached blob opened for reading; close `handle` (or let a stream made from it close it). */
export interface OpenBlob {
  handle: FileHandle;
  size: number;
}

/** A layer as the cache directory holds it (augur cache ls). */
export interface CachedLayer {
  layer: string;
  blob: boolean;
  index: boolean;
  chunks: number;
  bytes: number;
  lastUsed: Date;
  /** A live augur's incomplete mount needs it. */
  pinned: boolean;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const CHUNK = /^chunks\/sha256\/[0-9a-f]{64}\/(\d+)-(\d+)$/;

/** [start, end) of a chunk file's name (`chunks/sha256/<hex>/<start>-<end>`); undefined for other files. */
function chunkBounds(rel: string): [number, number] | undefined {
  const m = CHUNK.exec(rel);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** ENOSPC/EDQUOT as an error that says what to do; other errors as they are. Nothing torn is left: writes go to wip/ first. */
function spaceError(err: unknown, dir: string, what: string): Error {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code !== "ENOSPC" && code !== "EDQUOT") return err instanceof Error ? err : new Error(String(err));
  return new UnavailableError(`cache directory ${dir} is out of space (${code}) storing ${what}: free space there, or set --cache-size below what its disk holds`, { cause: err });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function hexOf(digest: string): string {
  const m = DIGEST.exec(digest);
  if (!m) throw new InvalidArgumentError(`not a sha256 digest: ${JSON.stringify(digest)}`);
  return m[1] as string;
}

/** Bytes [offset, offset+length) of a file, or undefined if it is gone or too short. */
async function readAt(path: string, offset: number, length: number): Promise<Buffer | undefined> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === length ? buf : undefined;
  } finally {
    await fh.close();
  }
}

