// The node-local cache: content-addressed layer data on disk, bounded in
// bytes, least recently used first out.
//
//   blobs/sha256/<hex>                 a whole layer blob, verified against its digest
//   chunks/sha256/<hex>/<start>-<end>  verified compressed bytes [start, end) of a layer
//   indexes/sha256/<hex>               the seekable index of layer <hex> (tar-index-codec)
//   wip/                               files being written
//
// Every file is written under wip/ and renamed into place, so a reader (this
// augur or another one sharing the directory) sees a whole file or none; a
// file that vanishes under a reader (evicted by a neighbour) is a miss.
// Layers in use by a mount that is not yet complete are pinned: eviction
// skips them, because their mount still needs what was fetched.
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, openSync, readdirSync, rmSync, statSync, type WriteStream } from "node:fs";
import { open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LRUCache } from "lru-cache";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";

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
  pinnedLayers: string[];
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

interface Item {
  size: number;
  layer: string;
}

export class LayerCache {
  readonly dir: string;
  readonly maxBytes: number;
  /** Recency order of every cached file (relative path -> size); eviction walks it oldest first. */
  // Sized by bytes only so lru-cache grows as needed (a `max` count preallocates
  // that many slots); the byte bound and pins are enforced by #evict.
  readonly #items = new LRUCache<string, Item>({ maxSize: Number.MAX_SAFE_INTEGER, sizeCalculation: (i) => Math.max(1, i.size) });
  /** Sorted [start, end) chunk ranges per layer hex, read from disk on first use. */
  readonly #ranges = new Map<string, [number, number][]>();
  readonly #pins = new Map<string, number>();
  #used = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  constructor(dir: string, maxBytes: number) {
    if (!(maxBytes > 0)) throw new InvalidArgumentError(`cache size must be positive, got ${maxBytes}`);
    this.dir = dir;
    this.maxBytes = maxBytes;
    for (const d of ["blobs/sha256", "chunks/sha256", "indexes/sha256", "wip"]) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
    this.#scan();
  }

  /** Path of the whole verified blob, if cached. */
  async blobPath(digest: string): Promise<string | undefined> {
    const rel = `blobs/sha256/${hexOf(digest)}`;
    try {
      await stat(join(this.dir, rel));
      this.#touch(rel);
      return join(this.dir, rel);
    } catch {
      this.#forget(rel);
      return undefined;
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
    return {
      write: async (chunk) => {
        if (failed) throw failed;
        size += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", resolve));
      },
      commit: async () => {
        await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
        if (failed) throw failed;
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
  async readRange(digest: string, offset: number, length: number): Promise<Buffer | undefined> {
    const hex = hexOf(digest);
    // On every FUSE read of a layer: open the whole blob directly (no stat
    // first); it may also have been written by another augur sharing the cache.
    const blob = `blobs/sha256/${hex}`;
    const whole = await readAt(join(this.dir, blob), offset, length);
    if (whole) {
      this.#touch(blob);
      this.#hits++;
      return whole;
    }
    const pieces = this.#cover(hex, offset, offset + length);
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
      this.#touch(rel);
      part.copy(out, lo - offset);
    }
    this.#hits++;
    return out;
  }

  /** Stores verified compressed bytes of a layer starting at `offset`. */
  async storeRange(digest: string, offset: number, data: Buffer): Promise<void> {
    const hex = hexOf(digest);
    const end = offset + data.length;
    if (data.length === 0 || this.#items.has(`blobs/sha256/${hex}`) || this.#cover(hex, offset, end)) return;
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
      this.#touch(rel);
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

  /** Drops everything cached for a layer (its data failed verification). */
  async dropLayer(digest: string): Promise<void> {
    const hex = hexOf(digest);
    for (const rel of [...this.#items.keys()]) if (this.#items.get(rel)?.layer === hex && !rel.startsWith("indexes/")) this.#remove(rel);
    this.#ranges.delete(hex);
    await rm(join(this.dir, "chunks/sha256", hex), { recursive: true, force: true });
  }

  /** Keeps a layer's data from eviction until the returned function is called. */
  pin(digest: string): () => void {
    const hex = hexOf(digest);
    this.#pins.set(hex, (this.#pins.get(hex) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#pins.get(hex) ?? 1) - 1;
      if (n <= 0) this.#pins.delete(hex);
      else this.#pins.set(hex, n);
    };
  }

  status(): CacheStatus {
    const files = { blobs: 0, chunks: 0, indexes: 0 };
    const bytes = { blobs: 0, chunks: 0, indexes: 0 };
    for (const [rel, item] of this.#items.entries()) {
      const kind = rel.slice(0, rel.indexOf("/")) as CacheKind;
      files[kind]++;
      bytes[kind] += item.size;
    }
    return {
      dir: this.dir, maxBytes: this.maxBytes, usedBytes: this.#used, files, bytes,
      pinnedLayers: [...this.#pins.keys()].map((h) => `sha256:${h}`),
      hits: this.#hits, misses: this.#misses, hitRate: this.#hits + this.#misses ? this.#hits / (this.#hits + this.#misses) : 0, evictions: this.#evictions,
    };
  }

  async #publish(rel: string, data: Buffer): Promise<void> {
    const tmp = this.#wipPath();
    try {
      await writeFile(tmp, data, { mode: 0o600 });
      await rename(tmp, join(this.dir, rel));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  #wipPath(): string {
    return join(this.dir, "wip", `${process.pid}-${randomBytes(6).toString("hex")}`);
  }

  /** The cached chunk ranges that together cover [start, end), or undefined. */
  #cover(hex: string, start: number, end: number): [number, number][] | undefined {
    const ranges = this.#rangesOf(hex);
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

  #rangesOf(hex: string): [number, number][] {
    let ranges = this.#ranges.get(hex);
    if (!ranges) {
      ranges = [];
      this.#ranges.set(hex, ranges);
    }
    return ranges;
  }

  #add(rel: string, size: number, layer: string): void {
    if (this.#items.has(rel)) {
      this.#touch(rel);
      return;
    }
    this.#items.set(rel, { size, layer });
    this.#used += size;
    const m = /^chunks\/sha256\/[0-9a-f]+\/(\d+)-(\d+)$/.exec(rel);
    if (m) {
      const ranges = this.#rangesOf(layer);
      ranges.push([Number(m[1]), Number(m[2])]);
      ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    }
    this.#evict();
  }

  #touch(rel: string): void {
    this.#items.get(rel); // moves it to the most recent end
  }

  #forget(rel: string): void {
    const item = this.#items.get(rel);
    if (!item) return;
    this.#items.delete(rel);
    this.#used -= item.size;
    const m = /^chunks\/sha256\/([0-9a-f]+)\/(\d+)-(\d+)$/.exec(rel);
    if (m) {
      const ranges = this.#rangesOf(m[1] as string);
      const i = ranges.findIndex((r) => r[0] === Number(m[2]) && r[1] === Number(m[3]));
      if (i >= 0) ranges.splice(i, 1);
    }
  }

  #remove(rel: string): void {
    this.#forget(rel);
    rmSync(join(this.dir, rel), { force: true });
  }

  /** Removes least recently used files of unpinned layers until the cache fits. */
  #evict(): void {
    if (this.#used <= this.maxBytes) return;
    for (const rel of [...this.#items.rkeys()]) {
      if (this.#used <= this.maxBytes) return;
      const item = this.#items.peek(rel);
      if (!item || this.#pins.has(item.layer)) continue;
      this.#remove(rel);
      this.#evictions++;
      log.debug("evicted", { file: rel, bytes: item.size });
    }
    if (this.#used > this.maxBytes) log.warn("cache is over its size: everything left belongs to layers in use", { used: this.#used, max: this.maxBytes });
  }

  /** Loads what is on disk, oldest first so the recency order survives a restart roughly. */
  #scan(): void {
    const found: { rel: string; size: number; mtime: number; layer: string }[] = [];
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
        found.push({ rel, size: st.size, mtime: st.mtimeMs, layer });
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
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) this.#add(f.rel, f.size, f.layer);
    if (found.length) log.info("cache loaded", { dir: this.dir, files: found.length, bytes: this.#used });
  }
}

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

